"""Splitting PEM text into its blocks, in time linear in the input.

RFC 7468 section 2: a block is a ``-----BEGIN LABEL-----`` line, base64 text, and an
``-----END LABEL-----`` line with the same label; text between blocks is ignored.

A regular expression such as ``BEGIN (.+?)-----.*?-----END \\1-----`` rescans the rest of
the input from every BEGIN line that has no END, so a hostile file of n unterminated BEGIN
lines costs O(n^2) (8,000 such lines took 43 s). This scanner looks at each line once.
"""

from __future__ import annotations

from dataclasses import dataclass

_BEGIN = b"-----BEGIN "
_END = b"-----END "
_DASHES = b"-----"
# RFC 7468 section 3: labels are printable ASCII without '-' at either end; the longest in
# real use ("ENCRYPTED PRIVATE KEY", "NEW CERTIFICATE REQUEST") is far below this.
_MAX_LABEL = 64


@dataclass(frozen=True)
class PemBlock:
    """One PEM block: its label (``CERTIFICATE``, ``PRIVATE KEY``...) and its full text."""

    label: str
    text: bytes


def _label_of(line: bytes, marker: bytes) -> str | None:
    """The label of a ``-----BEGIN X-----`` / ``-----END X-----`` line, or None if it is not one."""
    if not line.startswith(marker) or not line.endswith(_DASHES) or len(line) < len(marker) + len(_DASHES):
        return None
    label = line[len(marker) : -len(_DASHES)]
    if len(label) > _MAX_LABEL or not all(0x20 <= c < 0x7F for c in label) or b"-----" in label:
        return None
    return label.decode("ascii")


def split_pem(data: bytes) -> list[PemBlock]:
    """Every complete PEM block in ``data``, in order (one pass over the lines).

    A BEGIN without its END is dropped, and a second BEGIN before the END starts the block
    over, as OpenSSL's PEM reader does.
    """
    blocks: list[PemBlock] = []
    label: str | None = None
    start = 0
    position = 0
    for line in data.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(_BEGIN):
            found = _label_of(stripped, _BEGIN)
            if found is not None:
                label, start = found, position
        elif label is not None and stripped.startswith(_END) and _label_of(stripped, _END) == label:
            text = data[start : position + len(line)].strip()
            blocks.append(PemBlock(label, text + b"\n"))
            label = None
        position += len(line)
    return blocks


def certificate_blocks(data: bytes) -> list[bytes]:
    """The text of each ``CERTIFICATE`` block, in order."""
    return [block.text for block in split_pem(data) if block.label == "CERTIFICATE"]


__all__ = ["PemBlock", "certificate_blocks", "split_pem"]
