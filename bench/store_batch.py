"""Cost of the store's batch path against a bare cryptography loop writing the same files.

baseline   for each name: new P-256 key, a leaf certificate with the same extensions grpcpki
           sets, signed by an in-memory CA, and cert.pem / chain.pem / key.pem written to
           certs/NAME/ (plain open/write/close: no fsync, no lock, no inventory)
batch      Pki.issue_many() of the same names: one locked store transaction (journal, one
           syncfs, one SQLite commit, renames), inventory rows included
renew      grpcpki.engine.rotation.renew(force=True) of all of them: archive links, new files,
           superseded rows, one transaction
single     Pki.issue() one name at a time (a transaction each): what a shell loop of
           `grpcpki issue` pays inside the process

Prints certificates per second (median of the rounds, which alternate the cases) and each as a
ratio to the baseline. No thresholds.

    python bench/store_batch.py [--count 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from grpcpki.engine import Pki, Role
from grpcpki.engine.pki import LeafRequest
from grpcpki.engine.rotation import renew


def bare_loop(root: Path, names: list[str]) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.now(UTC)
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        directory = root / "certs" / name
        directory.mkdir(parents=True, mode=0o700)
        (directory / "key.pem").write_bytes(key_pem)
        (directory / "cert.pem").write_bytes(cert_pem)
        (directory / "chain.pem").write_bytes(cert_pem)


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def one_round(names: list[str], single_names: list[str]) -> dict[str, float]:
    """Seconds per certificate of each case, in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        result = {"baseline": timed(lambda: bare_loop(base / "bare", names)) / len(names)}
        pki = Pki.init(base / "pki", name="bench CA")
        requests = [LeafRequest(Role.SERVER, name) for name in names]
        result["batch"] = timed(lambda: pki.issue_many(requests)) / len(names)
        result["renew"] = timed(lambda: renew(pki, force=True)) / len(names)
        single_pki = Pki.init(base / "single", name="bench CA")
        result["single"] = timed(lambda: [single_pki.issue(Role.SERVER, n) for n in single_names]) / len(single_names)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the cases this many times; medians")
    args = parser.parse_args()
    names = [f"svc-{i:05d}.example.internal" for i in range(args.count)]
    single_names = names[: max(1, args.count // 10)]
    samples: dict[str, list[float]] = {"baseline": [], "batch": [], "renew": [], "single": []}
    # Rounds alternate the cases, so a burst of other work on the machine hits them alike.
    for round_ in range(args.rounds):
        for case, seconds in one_round(names, single_names).items():
            samples[case].append(seconds)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    per_cert = {case: statistics.median(values) for case, values in samples.items()}
    for case, seconds in per_cert.items():
        ratio = per_cert["baseline"] / seconds
        print(f"{case:<10} {1 / seconds:8.0f} certs/s   {ratio:5.2f}x the baseline's speed")


if __name__ == "__main__":
    main()
