"""Every command grpcpki suggests as a fix, composed in one place from the data the check used.

A suggested fix is code the user will run, so it is safe as printed (docs/failures.md#safe-fixes):
it never destroys or repurposes a certificate in use.

* ``--replace`` only for a certificate the PKI inventory holds under that very name
  (:attr:`Owner.managed`), with the same role and every name it had: the new certificate only
  adds, like ``renew`` plus a name, and a running ``grpcpki serve`` reloads it.
* A certificate needed for another role (a server certificate used as a client certificate) gets
  a new name, ``grpcpki issue client localhost-client``: the one in use keeps working.
* Anyone else's material (another tool's files, a certificate seen on the wire) gets a plain
  ``grpcpki issue ROLE NAME``: if NAME exists, ``issue`` refuses and nothing changes.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from grpcpki.diagnosis.facts import ext, parse_ip, san_list
from grpcpki.diagnosis.findings import RoleName

__all__ = ["Owner", "cert_role", "grpcpki", "issue_command", "name_for", "reissue", "renew"]


@dataclass(frozen=True)
class Owner:
    """Whose certificate a fix is about: its name (inventory name, or the CN of someone else's
    certificate), the role it is checked for, and whether the inventory holds this very one."""

    name: str
    role: RoleName | None = None
    managed: bool = False


def name_for(cert: x509.Certificate) -> str:
    """The grpcpki name to suggest for someone else's certificate: its CN when that is a valid
    name, else its first DNS SAN, else the last segment of its SPIFFE ID (mkcert leaves have no
    CN), else the placeholder NAME."""
    from grpcpki.engine.errors import InvalidNameError
    from grpcpki.engine.pki import validate_cert_name

    sans = san_list(cert) or []
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    candidates = [str(common[0].value)] if common else []
    candidates += [s[4:] for s in sans if s.startswith("DNS:") and "://" not in s]
    candidates += [s.rstrip("/").rsplit("/", 1)[-1] for s in sans if s.startswith("URI:spiffe://")]
    for candidate in candidates:
        try:
            return validate_cert_name(candidate)
        except InvalidNameError:
            continue
    return "NAME"


def grpcpki(*args: str) -> str:
    return "grpcpki " + " ".join(shlex.quote(a) for a in args)


def renew(owner: Owner) -> str:
    # renew keeps the name, role and SANs: safe for anything in use (the server reloads it).
    return grpcpki("renew", owner.name)


def cert_role(cert: x509.Certificate) -> RoleName | None:
    """What a certificate is made for, from its EKU: with both purposes, a server when it names
    a host (DNS/IP SAN), else a client (mkcert -client writes both EKUs and no host name)."""
    eku = ext(cert, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage):
        return None
    server = ExtendedKeyUsageOID.SERVER_AUTH in eku
    client = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    if server and client:
        names = san_list(cert) or []
        return "server" if any(s.startswith(("DNS:", "IP:")) for s in names) else "client"
    return "server" if server else "client" if client else None


def _san_flags(sans: Sequence[str], *, hosts: bool) -> list[tuple[str, str]]:
    flags: list[tuple[str, str]] = []
    for san in sans:
        kind, _, value = san.partition(":")
        if kind == "URI" or (kind == "DNS" and value.lower().startswith("spiffe://")):
            # A SPIFFE ID written as a DNS SAN (cfssl) goes back where it belongs: a URI SAN.
            flags.append(("--spiffe-id", value) if value.lower().startswith("spiffe://") else ("--uri", value))
        elif kind in ("DNS", "IP") and hosts:
            flags.append((f"--{kind.lower()}", value))
    return flags


def reissue(owner: Owner, cert: x509.Certificate | None = None, *, host: str | None = None, role: RoleName | None = None) -> str:
    """The ``grpcpki issue`` line that makes the certificate ``owner`` needs: its names (from
    ``cert``) plus ``host``, for ``role`` (default: the role it is checked for)."""
    wanted: RoleName = role or owner.role or (cert_role(cert) if cert is not None else None) or "server"
    made_for = cert_role(cert) if cert is not None else None
    other_role = made_for is not None and made_for != wanted
    # A new client certificate made from a server's needs no host names; otherwise every name stays.
    hosts = not (other_role and wanted == "client")
    flags = _san_flags((san_list(cert) or []) if cert is not None else [], hosts=hosts)
    if host is not None:
        ip = parse_ip(host)
        flags.append(("--ip", str(ip)) if ip is not None else ("--dns", host))
    args = ["issue", wanted, f"{owner.name}-{wanted}" if other_role else owner.name]
    for flag, value in dict.fromkeys(flags):
        args += [flag, value]
    if owner.managed and not other_role:
        # The inventory's own certificate, same role, every name kept: --replace only adds.
        args.append("--replace")
    return grpcpki(*args)


def issue_command(kind: str, name: str, sans: Sequence[str]) -> str:
    """The ``grpcpki issue KIND NAME ...`` that makes a certificate with these SANs again
    (``sans`` as ``"URI:spiffe://..."``, ``"DNS:..."``, ``"IP:..."``): for a revoked one, which
    ``grpcpki renew`` cannot reissue and whose name is free again."""
    args = ["issue", kind, name]
    for san in sans:
        kind_, _, value = san.partition(":")
        kind_ = kind_.upper()
        if kind_ == "URI":
            args += ["--spiffe-id", value] if value.startswith("spiffe://") else ["--uri", value]
        elif kind_ == "DNS" and value.lower() != name.lower():  # NAME itself becomes a DNS SAN
            args += ["--dns", value]
        elif kind_ == "IP" and not (name == "localhost" and value in ("127.0.0.1", "::1")):  # added for localhost
            args += ["--ip", value]
    return grpcpki(*args)
