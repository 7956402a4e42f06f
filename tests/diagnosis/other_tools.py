"""Material in the shapes other tools make, generated here (no vendored files).

* mkcert (FiloSottile/mkcert cert.go): root with critical basicConstraints CA:TRUE pathlen 0 and
  critical keyUsage keyCertSign; leaves with no CN, critical keyUsage digitalSignature +
  keyEncipherment (for every key type), EKU clientAuth with -client, plus serverAuth whenever there
  is a DNS/IP/URI SAN. So `mkcert -client spiffe://...` is a client certificate with both EKUs and
  no host name.
* cfssl (the usual ca-csr.json / "www"-style profile): ECDSA P-256 keys, usages signing + key
  encipherment + server auth + client auth, and the `hosts` list written as SANs; a `spiffe://`
  entry ends up as a DNS SAN.
* easy-rsa 3 (x509-types/ca, server, client), made with the openssl CLI as easy-rsa does: the CA's
  basicConstraints CA:true and keyUsage are NOT critical; leaves have CA:FALSE, an
  authorityKeyIdentifier with keyid and issuer, EKU serverAuth or clientAuth, RSA 2048.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Files:
    cert: Path
    key: Path
    ca: Path


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ku(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def _ski(key: object) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)  # type: ignore[arg-type]


def mkcert(tmp: Path, *, client_uri: str = "spiffe://example.org/web", ecdsa: bool = False) -> tuple[Files, Files]:
    """(server for localhost, client for ``client_uri``) as `mkcert [-ecdsa] localhost` and
    `mkcert -client [-ecdsa] URI` make them, with their CA root."""
    tmp.mkdir(parents=True, exist_ok=True)
    root_key = rsa.generate_private_key(65537, 3072)
    root_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mkcert development CA"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "dev@laptop"),
        x509.NameAttribute(NameOID.COMMON_NAME, "mkcert dev@laptop"),
    ])
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(_ku(key_cert_sign=True), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ski(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ca = tmp / "rootCA.pem"
    ca.write_bytes(root.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, sans: list[x509.GeneralName], ekus: list[x509.ObjectIdentifier]) -> Files:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            ec.generate_private_key(ec.SECP256R1()) if ecdsa else rsa.generate_private_key(65537, 2048)
        )
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mkcert development certificate"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "dev@laptop"),
        ])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(root_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(hours=1))
            .not_valid_after(_now() + dt.timedelta(days=825))
            # mkcert sets keyEncipherment for every key type, ECDSA included.
            .add_extension(_ku(digital_signature=True, key_encipherment=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        files = Files(tmp / f"{stem}.pem", tmp / f"{stem}-key.pem", ca)
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files.key, key)
        return files

    server = leaf("localhost", [x509.DNSName("localhost")], [ExtendedKeyUsageOID.SERVER_AUTH])
    client = leaf(
        "web-client",
        [x509.UniformResourceIdentifier(client_uri)],
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
    )
    return server, client


def cfssl(tmp: Path, hosts: list[str]) -> Files:
    """A cfssl-style ECDSA leaf for ``hosts`` (each an IP or, otherwise, a DNS SAN, as cfssl writes
    a `spiffe://` host), usages signing, key encipherment, server auth, client auth."""
    tmp.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cfssl CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=1825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(_ski(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1)).not_valid_after(_now() + dt.timedelta(days=365))
        .add_extension(_ku(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = Files(tmp / "cfssl.pem", tmp / "cfssl-key.pem", tmp / "cfssl-ca.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return files


_EASYRSA_CA = """[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = Easy-RSA CA
[v3_ca]
basicConstraints = CA:true
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer:always
keyUsage = cRLSign, keyCertSign
"""
_EASYRSA_LEAF = """basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
extendedKeyUsage = {eku}
keyUsage = {ku}
subjectAltName = {san}
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def easyrsa(tmp: Path) -> tuple[Files, Files]:
    """(server "localhost", client "web") as `easyrsa build-ca nopass` + `build-server-full` /
    `build-client-full` make them, through the openssl CLI with easy-rsa's x509-types."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "ca.cnf").write_text(_EASYRSA_CA)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-config", "ca.cnf", "-sha256", cwd=tmp)

    def leaf(name: str, eku: str, ku: str, san: str) -> Files:
        (tmp / f"{name}.ext").write_text(_EASYRSA_LEAF.format(eku=eku, ku=ku, san=san))
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.req",
                 "-subj", f"/CN={name}", cwd=tmp)
        _openssl("x509", "-req", "-in", f"{name}.req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "825", "-sha256", "-extfile", f"{name}.ext", cwd=tmp)
        (tmp / f"{name}.key").chmod(0o600)
        return Files(tmp / f"{name}.crt", tmp / f"{name}.key", tmp / "ca.crt")

    server = leaf("localhost", "serverAuth", "digitalSignature,keyEncipherment", "DNS:localhost,IP:127.0.0.1")
    client = leaf("web", "clientAuth", "digitalSignature", "DNS:web")
    return server, client
