"""Renew over mTLS: the identity from the presented certificate, only the key from the CSR."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from caservice_support import CaService, Setup
from support import assert_clean_error, run_grpcpki
from grpcpki.engine import workload
from grpcpki.engine.enrollment import CertificateRejected, authenticate_presented, renew_presented, store_for
from grpcpki.engine.pki import Pki
from grpcpki.engine.profiles import Role


def _serial(path: Path) -> str:
    return f"{x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number:x}"


def _workload_from_pki(pki: Path, name: str, out: Path, trust: Path) -> Path:
    """A workload directory holding a certificate issued directly by a PKI (not via the service)."""
    out.mkdir()
    shutil.copy(pki / "certs" / name / "chain.pem", out / "chain.pem")
    shutil.copy(pki / "certs" / name / "key.pem", out / "key.pem")
    shutil.copy(trust, out / "ca.crt")
    return out


def test_renew_with_a_good_certificate_rekeys_and_keeps_the_identity(setup: Setup, service: CaService) -> None:
    token = setup.token("web", "--spiffe-id", "spiffe://example.org/web")
    assert setup.enroll(service, token, "web").code == 0
    out = setup.tmp / "web"
    old_serial, old_key = _serial(out / "chain.pem"), (out / "key.pem").read_bytes()
    # Not due yet: nothing changes.
    idle = setup.daemon(service, "web")
    assert idle.code == 0 and "not due" in idle.stderr and _serial(out / "chain.pem") == old_serial
    result = setup.daemon(service, "web", "--force")
    assert result.code == 0, result.output
    assert _serial(out / "chain.pem") != old_serial
    assert (out / "key.pem").read_bytes() != old_key  # a new key, generated here
    leaf = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["spiffe://example.org/web"]
    pki = Pki.open(setup.pki)
    assert pki.inventory.by_serial(old_serial).status == "superseded"  # type: ignore[union-attr]
    actions = [(a.action, a.actor) for a in store_for(pki).audit("web")]
    assert actions[-1] == ("renew", f"certificate:{old_serial}")


def test_renew_with_a_revoked_certificate_is_refused(setup: Setup, service: CaService) -> None:
    assert setup.enroll(service, setup.token("web"), "web").code == 0
    assert setup.cli("revoke", "web", "--reason", "keyCompromise").code == 0
    result = setup.daemon(service, "web", "--force")
    assert_clean_error(result, "revoked", "cannot be renewed")


def test_renew_with_an_expired_certificate_is_refused(setup: Setup, service: CaService) -> None:
    pki = Pki.open(setup.pki)
    long_ago = datetime.now(UTC) - timedelta(days=10)
    pki.issue(Role.CLIENT, "old", days=1, now=long_ago)
    out = _workload_from_pki(setup.pki, "old", setup.tmp / "old", setup.pki / "ca.crt")
    result = setup.daemon(service, "old", "--force")
    # gRPC verifies the client chain in the handshake, so an expired certificate never reaches Renew.
    assert_clean_error(result, "CA service")
    assert _serial(out / "chain.pem") == pki.find("old").serial
    # And the engine refuses it on its own, should a proxy have terminated TLS.
    with pytest.raises(CertificateRejected, match="expired"):
        authenticate_presented(pki, (setup.pki / "certs" / "old" / "cert.pem").read_bytes())


def test_renew_with_a_certificate_from_a_foreign_ca_is_refused(setup: Setup, service: CaService) -> None:
    other = setup.tmp / "other"
    for args in (("init-ca", "--name", "Other CA"), ("issue", "client", "web")):
        assert run_grpcpki("--pki", str(other), *args, cwd=setup.tmp).code == 0
    _workload_from_pki(other, "web", setup.tmp / "foreign", setup.pki / "ca.crt")
    result = setup.daemon(service, "foreign", "--force")
    assert_clean_error(result, "CA service")
    pki = Pki.open(setup.pki)
    assert pki.inventory.active_leaf("web") is None
    with pytest.raises(CertificateRejected, match="not issued by this CA"):
        authenticate_presented(pki, (other / "certs" / "web" / "cert.pem").read_bytes())


def test_only_the_newest_certificate_renews_and_tls_only_port_refuses(setup: Setup, service: CaService) -> None:
    assert setup.enroll(service, setup.token("web"), "web").code == 0
    out = setup.tmp / "web"
    first = (out / "chain.pem").read_bytes()
    assert setup.daemon(service, "web", "--force").code == 0
    pki = Pki.open(setup.pki)
    with pytest.raises(CertificateRejected, match="superseded"):
        renew_presented(pki, presented_pem=first, csr_pem=workload.new_key_and_csr("web").csr_pem)
    on_enroll_port = run_grpcpki("renew", "--daemon", "--once", "--force", "--ca-server", service.enroll,
                                 "--dir", str(out), cwd=setup.tmp)
    assert_clean_error(on_enroll_port, "no client certificate was presented", "--listen")


def test_daemon_usage_errors_name_the_flag(setup: Setup) -> None:
    result = setup.cli("renew", "--daemon", "--dir", str(setup.tmp))
    assert result.code == 2 and "--ca-server" in result.stderr
    result = setup.cli("renew", "--once", "--ca-server", "127.0.0.1:1", "--dir", str(setup.tmp))
    assert result.code == 2 and "--daemon" in result.stderr
    missing = run_grpcpki("renew", "--daemon", "--once", "--ca-server", "127.0.0.1:1", "--dir",
                          str(setup.tmp / "nothing"), cwd=setup.tmp)
    assert_clean_error(missing, "holds no enrolled certificate")
