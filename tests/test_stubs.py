"""The committed Greeter stubs are exactly what protos/generate.py writes today.

Fails when protos/helloworld.proto changed without regenerating, when someone edited a
generated file, or when grpcio-tools (pinned in the ``test`` extra) moved: regenerate with
``python protos/generate.py`` and bump the grpcio/protobuf floors in pyproject.toml to
what the new stubs check at import (GRPC_GENERATED_VERSION, ValidateProtobufRuntimeVersion).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "protos" / "generate.py"

pytest.importorskip("grpc_tools", reason="grpcio-tools (the `test` extra) regenerates the stubs")


def _load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["greeter", "caservice"])
def test_committed_stubs_match_a_fresh_generation(tmp_path: Path, target: str) -> None:
    gen = _load_script()
    proto, package, expected = next(t for t in gen.TARGETS if t[1][1] == target)
    written = gen.generate(tmp_path, proto, package)
    assert sorted(p.name for p in written) == sorted(expected)
    for fresh in written:
        committed = REPO.joinpath(*package) / fresh.name
        assert committed.exists(), f"{committed} is missing: run python protos/generate.py"
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.relative_to(REPO)} differs from what grpcio-tools generates: "
            "run python protos/generate.py"
        )


def test_stubs_import_absolutely() -> None:
    grpc_stub = (REPO / "grpcpki" / "greeter" / "_proto" / "helloworld_pb2_grpc.py").read_text()
    assert "from grpcpki.greeter._proto import helloworld_pb2" in grpc_stub
    assert not re.search(r"^import helloworld_pb2", grpc_stub, re.MULTILINE)
    ca_stub = (REPO / "grpcpki" / "caservice" / "_proto" / "ca_pb2_grpc.py").read_text()
    assert "from grpcpki.caservice._proto import ca_pb2" in ca_stub
    assert "'/grpcpki.ca.v1.CertificateAuthority/Enroll'" in ca_stub  # the wire name comes from the proto


def test_runtime_floors_cover_the_stubs() -> None:
    """pyproject's grpcio/protobuf floors are at least the versions the stubs demand at import."""
    stub_dir = REPO / "grpcpki" / "greeter" / "_proto"
    grpc_needed = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (stub_dir / "helloworld_pb2_grpc.py").read_text())
    pb = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),",
        (stub_dir / "helloworld_pb2.py").read_text(),
    )
    assert grpc_needed and pb
    pyproject = (REPO / "pyproject.toml").read_text()
    grpc_floor = re.search(r'"grpcio>=([\d.]+)"', pyproject)
    pb_floor = re.search(r'"protobuf>=([\d.]+)"', pyproject)
    assert grpc_floor and pb_floor

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    assert version(grpc_floor.group(1)) >= version(grpc_needed.group(1))
    assert version(pb_floor.group(1)) >= tuple(int(g) for g in pb.groups())
