"""Diagnosis: why gRPC/TLS material or a gRPC call fails, in plain words, with a safe fix.

One package, one concern per module, read in this order when following a failure:

* :mod:`.catalogue` - the failures themselves, as data: what grpcio, grpc-go, grpc-js and
  OpenSSL print, the cause, the fix (docs/failures.md is the same table for people);
* :mod:`.explain` - a failed call's status text -> a first reading (a catalogue row);
* :mod:`.failure` - that reading + a live probe + the doctor -> one cause and one fix;
* :mod:`.probe` (policy) over :mod:`.handshake` (sockets) and :mod:`.wire` (TLS bytes);
* :mod:`.doctor` - static checks, over :mod:`.material` (reading files), :mod:`.certificate`,
  :mod:`.chain`, :mod:`.spiffe` (X509-SVID rules), :mod:`.fixes` (suggested commands) and
  :mod:`.findings` (the result type and every finding id);
* :mod:`.store` - the doctor over a whole PKI directory and its inventory;
* :mod:`.serverlog` - ``grpcpki serve``'s handshake log lines in plain words.

Imports the engine, never the CLI; nothing here imports grpc (the probe is stdlib ``ssl``), so
every module is importable in a process that never loads grpc (tests/engine/test_pki.py).

    from grpcpki.diagnosis import check_material, probe
    findings = check_material("chain.pem", "key.pem", role="server", trust="ca.crt", host="api")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpcpki._lazy import lazy_exports

if TYPE_CHECKING:
    from grpcpki.diagnosis.doctor import check_key_file, check_material, check_pem_file, check_trust_bundle
    from grpcpki.diagnosis.explain import Diagnosis, explain
    from grpcpki.diagnosis.failure import diagnose_failure
    from grpcpki.diagnosis.findings import FINDINGS, Finding, Severity, has_errors
    from grpcpki.diagnosis.probe import ProbeResult, probe

_EXPORTS: dict[str, str] = {
    "check_key_file": "doctor",
    "check_material": "doctor",
    "check_pem_file": "doctor",
    "check_trust_bundle": "doctor",
    "Diagnosis": "explain",
    "explain": "explain",
    "diagnose_failure": "failure",
    "FINDINGS": "findings",
    "Finding": "findings",
    "Severity": "findings",
    "has_errors": "findings",
    "ProbeResult": "probe",
    "probe": "probe",
}

__all__ = [
    "FINDINGS",
    "Diagnosis",
    "Finding",
    "ProbeResult",
    "Severity",
    "check_key_file",
    "check_material",
    "check_pem_file",
    "check_trust_bundle",
    "diagnose_failure",
    "explain",
    "has_errors",
    "probe",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
