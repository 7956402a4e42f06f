"""`grpcpki apply` of N P-256 services against the openssl CLI recipe and a bare cryptography loop.

Issue 10's targets, as ratios of certificates per second measured in this run:
  apply (first run)  >= 20x the openssl CLI recipe and >= 0.6x the bare in-process loop
  apply (second run) <= 1/5 of the first run's time (nothing to change)

  openssl    per certificate: `openssl genpkey` (P-256) + `openssl req -new` + `openssl x509 -req`
             with the SANs and usages in an extfile: the recipe people script. Measured on
             --openssl-sample certificates (3 processes each), reported per certificate.
  bare loop  one Python process: for each service a P-256 key, a leaf with grpcpki's extensions
             (same SANs), signed by an in-memory CA, cert.pem / chain.pem / key.pem (0600) written
             to certs/NAME/; no fsync, no lock, no inventory. Interpreter start-up included.
  apply      `python -m grpcpki apply` of a manifest naming the same N services (a numbered
             pattern), into a PKI made beforehand with init-ca: locked store batches with
             journal, syncs and inventory rows. Interpreter start-up included.
  apply x2   the same command again: plans, finds nothing to do.
  apply -j1  the first apply with `--jobs 1`: everything in one process (the default forks one
             signing worker per CPU for batches of 128 or more; both figures are printed, and
             the CPU time of a pooled run includes its workers').

No thresholds: it reports, people judge.

    python bench/apply.py [--count 1000] [--openssl-sample 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from compiled import precompile_grpcpki

BARE_LOOP = '''
import os, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

root, count = Path(sys.argv[1]), int(sys.argv[2])
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
for i in range(1, count + 1):
    name = f"svc-{i:05}"
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(name), x509.DNSName(f"{name}.internal"),
            x509.UniformResourceIdentifier(f"spiffe://example.org/{name}")]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    directory = root / "certs" / name
    directory.mkdir(parents=True, mode=0o700)
    fd = os.open(directory / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "chain.pem").write_bytes(cert_pem)
'''

MANIFEST = '''
[defaults]
spiffe_id = "spiffe://example.org/{{name}}"
dns = ["{{name}}.internal"]

[[service]]
name = "svc-{{i:05}}"
count = {count}
'''


CPU: list[float] = []  # user + system CPU seconds of each run(), in order


def run(argv: list[str], cwd: Path) -> float:
    """Wall seconds of a child process; its CPU seconds go to CPU (steadier on a shared machine,
    but blind to time spent waiting for the disk, which the wall time includes)."""
    # stderr to a file, not a pipe: nobody reads a pipe during wait4, and a full one would block.
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{argv} failed: {log.read().decode()}")
    CPU.append(usage.ru_utime + usage.ru_stime)
    return seconds


def openssl_recipe(openssl: str, directory: Path, count: int) -> float:
    directory.mkdir()
    run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], directory)
    run([openssl, "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench CA", "-days", "3650", "-out", "ca.crt"],
        directory)
    start = time.perf_counter()
    for i in range(1, count + 1):
        name = f"svc-{i:05}"
        (directory / f"{name}.ext").write_text(textwrap.dedent(f"""\
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:{name}, DNS:{name}.internal, URI:spiffe://example.org/{name}
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid
        """))
        for argv in (
            [openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key"],
            [openssl, "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr"],
            [openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "90", "-extfile", f"{name}.ext", "-out", f"{name}.crt"],
        ):
            subprocess.run(argv, cwd=directory, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--openssl-sample", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare/apply this often, keep the best of each")
    parser.add_argument("--jobs", type=int, default=None, help="pass --jobs N to the (first) apply [default: its own]")
    args = parser.parse_args()
    precompile_grpcpki()  # as installed: bench/compiled.py
    openssl = shutil.which("openssl")
    version = subprocess.run([openssl, "version"], capture_output=True, text=True).stdout.strip() if openssl else "-"
    print(f"Python {platform.python_version()}, {version}, {os.cpu_count()} CPUs, N = {args.count}, "
          f"best of {args.rounds} rounds (openssl: {args.openssl_sample} certificates, one round)")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rates: dict[str, float] = {}
        if openssl:
            seconds = openssl_recipe(openssl, base / "openssl", args.openssl_sample)
            rates["openssl CLI recipe"] = args.openssl_sample / seconds
        (base / "bare.py").write_text(BARE_LOOP)
        bares, firsts, seconds_, bare_cpu, first_cpu, singles, single_cpu = [], [], [], [], [], [], []
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        for round_ in range(args.rounds):
            # Best of several alternating rounds: the machine is shared, and noise only slows.
            bares.append(run([sys.executable, str(base / "bare.py"), str(base / f"bare{round_}"), str(args.count)], base))
            bare_cpu.append(CPU[-1])
            work = base / f"apply{round_}"
            work.mkdir()
            (work / "grpcpki.toml").write_text(MANIFEST.format(count=args.count))
            run([sys.executable, "-m", "grpcpki", "init-ca", "--name", "bench CA"], work)
            firsts.append(run([sys.executable, "-m", "grpcpki", "apply", *jobs], work))
            first_cpu.append(CPU[-1])
            seconds_.append(run([sys.executable, "-m", "grpcpki", "apply"], work))
            single = base / f"single{round_}"
            single.mkdir()
            (single / "grpcpki.toml").write_text(MANIFEST.format(count=args.count))
            run([sys.executable, "-m", "grpcpki", "init-ca", "--name", "bench CA"], single)
            singles.append(run([sys.executable, "-m", "grpcpki", "apply", "--jobs", "1"], single))
            single_cpu.append(CPU[-1])
            shutil.rmtree(single)
        rates["bare cryptography loop"] = args.count / min(bares)
        first, second = min(firsts), min(seconds_)
        rates["grpcpki apply"] = args.count / first
        rates["grpcpki apply --jobs 1"] = args.count / min(singles)
        listed = subprocess.run([sys.executable, "-m", "grpcpki", "list", "--kind", "server"], cwd=work,
                                capture_output=True, text=True, check=True).stdout.count("\n")
        assert listed == args.count, f"apply made {listed} certificates, expected {args.count}"
    for label, rate in rates.items():
        print(f"{label:24s} {rate:9.1f} certs/s")
    apply_rate = rates["grpcpki apply"]
    if "openssl CLI recipe" in rates:
        print(f"apply / openssl CLI recipe:   x{apply_rate / rates['openssl CLI recipe']:.1f}  (target >= 20)")
        print(f"apply --jobs 1 / openssl:     x{rates['grpcpki apply --jobs 1'] / rates['openssl CLI recipe']:.1f}")
    print(f"apply / bare loop:            x{apply_rate / rates['bare cryptography loop']:.2f}  (target >= 0.6)")
    print(f"same in CPU time:             x{min(bare_cpu) / min(first_cpu):.2f}  "
          f"({min(first_cpu):.2f}s vs {min(bare_cpu):.2f}s of CPU, workers included)")
    print(f"apply --jobs 1 / bare loop:   x{rates['grpcpki apply --jobs 1'] / rates['bare cryptography loop']:.2f}  "
          f"wall, x{min(bare_cpu) / min(single_cpu):.2f} CPU ({min(single_cpu):.2f}s of CPU)")
    print(f"second apply / first apply:   {second / first:.3f}  ({second:.2f}s / {first:.2f}s, target <= 0.2)")


if __name__ == "__main__":
    main()
