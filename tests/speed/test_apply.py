"""`grpcpki apply [FILE]` (issue 10): a manifest of services, planned against the inventory and
applied through the store's batches; a second run changes nothing; errors name file, line, key."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from grpcpki.engine import Pki, Role
from grpcpki.engine.manifest import ManifestError, parse_manifest
from support import Result, assert_clean_error, run_grpcpki, tree

MANIFEST = """
[ca]
name = "Apply CA"

[defaults]
spiffe_id = "spiffe://example.org/{name}"

[[service]]
name = "orders"
dns = ["orders.internal"]
ip = ["10.0.0.7"]

[[service]]
name = "web"
kind = "client"

[[service]]
names = ["billing", "search"]
dns = ["{name}.svc.cluster.local"]

[[service]]
name = "worker-{i:03}"
count = 3
kind = "client"

[[service]]
columns = ["name", "ip"]
rows = [
  ["edge-a", "10.1.0.1"],
  ["edge-b", "10.1.0.2"],
]
"""
NAMES = {"orders", "web", "billing", "search", "worker-001", "worker-002", "worker-003", "edge-a", "edge-b"}


def apply(tmp_path: Path, *args: str, manifest: str | None = None) -> Result:
    if manifest is not None:
        (tmp_path / "grpcpki.toml").write_text(textwrap.dedent(manifest))
    return run_grpcpki("--pki", str(tmp_path / "pki"), "apply", *args, cwd=tmp_path)


def listing(tmp_path: Path, *args: str) -> dict[str, dict[str, object]]:
    result = run_grpcpki("--pki", str(tmp_path / "pki"), "list", "--json", *args, cwd=tmp_path)
    return {r["name"]: r for r in json.loads(result.stdout) if r["kind"] in ("server", "client")}


def test_apply_creates_then_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = apply(tmp_path, manifest=MANIFEST)
    assert first.code == 0, first.output
    assert "created CA 'Apply CA'" in first.stderr
    assert "create 9, renew 0, reissue 0, unchanged 0" in first.stderr
    assert "created server orders: serial " in first.stderr  # one line per change when not on a terminal
    certs = listing(tmp_path)
    assert set(certs) == NAMES
    assert certs["orders"]["sans"] == ["DNS:orders", "DNS:orders.internal", "IP:10.0.0.7", "URI:spiffe://example.org/orders"]
    assert certs["worker-002"]["kind"] == "client" and certs["edge-b"]["sans"][1] == "IP:10.1.0.2"
    assert (tmp_path / "pki/certs/orders/key.pem").stat().st_mode & 0o777 == 0o600

    second = apply(tmp_path)
    assert second.code == 0, second.output
    assert second.stderr.strip() == "nothing to change: 9 services in grpcpki.toml are up to date"
    assert {n: c["serial"] for n, c in listing(tmp_path).items()} == {n: c["serial"] for n, c in certs.items()}
    quiet = apply(tmp_path, "--quiet")
    assert quiet.code == 0 and quiet.output == ""


def test_drift_is_reissued_and_unlisted_certificates_are_left_alone(tmp_path: Path) -> None:
    assert apply(tmp_path, manifest=MANIFEST).code == 0
    before = listing(tmp_path)
    changed = MANIFEST.replace('ip = ["10.0.0.7"]', 'ip = ["10.0.0.8"]').replace(
        'names = ["billing", "search"]', 'names = ["billing"]'
    ).replace('name = "web"\nkind = "client"', 'name = "web"\nkind = "client"\nkey_type = "ed25519"')
    result = apply(tmp_path, manifest=changed)
    assert result.code == 0, result.output
    assert "create 0, renew 0, reissue 2, unchanged 6; 1 certificates not in the manifest are left alone" in result.stderr
    assert "reissued server orders (names +IP:10.0.0.8 -IP:10.0.0.7)" in result.stderr
    assert "reissued client web (key type ecdsa-p256 -> ed25519)" in result.stderr
    after = listing(tmp_path, "--all")
    assert after["search"]["serial"] == before["search"]["serial"]  # not in the manifest: untouched
    assert after["orders"]["sans"][2] == "IP:10.0.0.8" and after["web"]["key_type"] == "ed25519"
    history = json.loads(run_grpcpki("--pki", str(tmp_path / "pki"), "list", "--all", "--kind", "server",
                                     "--json").stdout)
    assert {(r["serial"], r["status"]) for r in history if r["name"] == "orders"} == {
        (before["orders"]["serial"], "superseded"), (after["orders"]["serial"], "active"),
    }
    assert apply(tmp_path).stderr.startswith("nothing to change")


def test_due_certificates_are_renewed(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki", name="Apply CA")
    old = pki.issue(Role.SERVER, "orders", sans=["orders.internal"], now=datetime.now(UTC) - timedelta(days=70))
    pki.inventory.close()
    result = apply(tmp_path, manifest='[[service]]\nname = "orders"\ndns = ["orders.internal"]\n')
    assert result.code == 0, result.output
    assert "renewed server orders (past two thirds of its lifetime" in result.stderr
    assert listing(tmp_path)["orders"]["serial"] != old.serial


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    result = apply(tmp_path, "--dry-run", manifest=MANIFEST)
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 9 and lines[0] == (
        "create server orders: DNS:orders, DNS:orders.internal, IP:10.0.0.7, URI:spiffe://example.org/orders"
    )
    assert "create the CA, create 9" in result.stderr
    assert tree(tmp_path / "pki") == []
    plan = json.loads(apply(tmp_path, "--dry-run", "--json").stdout)
    assert plan["dry_run"] is True and plan["plan"]["create"] == 9 and plan["plan"]["create_ca"] is True
    assert tree(tmp_path / "pki") == []


def test_json_reports_the_plan_and_what_was_applied(tmp_path: Path) -> None:
    result = apply(tmp_path, "--json", manifest=MANIFEST)
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["plan"]["create"] == 9 and len(document["applied"]) == 9
    assert {a["name"] for a in document["applied"]} == NAMES
    assert all(a["serial"] and a["not_after"].endswith("Z") for a in document["applied"])
    again = json.loads(apply(tmp_path, "--json").stdout)
    assert again["applied"] == [] and again["plan"]["unchanged"] == 9


def test_rsa_keys_come_from_worker_processes(tmp_path: Path) -> None:
    manifest = '[ca]\nname = "RSA CA"\n[[service]]\nname = "rsa-{i}"\ncount = 4\nkey_type = "rsa-2048"\n'
    result = apply(tmp_path, manifest=manifest)
    assert result.code == 0, result.output
    certs = listing(tmp_path)
    assert {c["key_type"] for c in certs.values()} == {"rsa-2048"} and len(certs) == 4


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[service]]\nname = "a"\ndnss = ["x"]\n', "grpcpki.toml:3: [[service]] #1 dnss: unknown key 'dnss'"),
        ('[[service]]\nname = "a"\n\n[[service]]\nname = "b"\ndns = ["bad_name!"]\n',
         "grpcpki.toml:6: [[service]] #2 dns (b): DNS name 'bad_name!'"),
        ('[[service]]\nname = "a"\nkey_type = "dsa"\n', "grpcpki.toml:3: [[service]] #1 key_type: unknown key type 'dsa'"),
        ('[[service]]\nname = "a"\ndays = 0\n', "grpcpki.toml:3: [[service]] #1 days: must be a number of days"),
        ('[[service]]\nname = "a"\ncount = 3\n', 'grpcpki.toml:2: [[service]] #1 name: a pattern needs "{i}"'),
        ('[[service]]\nname = "a"\n[[service]]\nnames = ["b", "a"]\n', "name 'a' is already given at grpcpki.toml:1"),
        ('[[service]\nname = "a"\n', "grpcpki.toml:1: not valid TOML"),
        ('[defaults]\nrenew_within = "30"\n', "grpcpki.toml:2: [defaults] renew_within:"),
        ('[[service]]\nname = "x-{name.__class__}"\ncount = 2\n', "grpcpki.toml:2: [[service]] #1 name"),
        ('[[service]]\ncolumns = ["name", "ip"]\nrows = [["a", "1.2.3"]]\n', "grpcpki.toml:3: [[service]] #1 rows row 1 (a) ip:"),
        ('[[service]]\nname = "web_1"\nkind = "client"\n', "(web_1): 'web_1' is not a hostname"),
    ],
    ids=["unknown-key", "bad-dns", "key-type", "days", "pattern", "duplicate", "toml", "duration", "format-attr",
         "row", "no-san"],
)
def test_manifest_errors_name_file_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    assert_clean_error(apply(tmp_path, manifest='[ca]\nname = "X"\n' * 0 + body), expected)
    assert not (tmp_path / "pki").exists()


def test_no_ca_and_no_ca_table_is_one_line(tmp_path: Path) -> None:
    assert_clean_error(apply(tmp_path, manifest='[[service]]\nname = "a"\n'), "has no [ca] table")
    assert_clean_error(apply(tmp_path, "missing.toml"), "manifest missing.toml does not exist")


def test_patterns_expand_in_the_engine() -> None:
    manifest = parse_manifest(textwrap.dedent("""
        [defaults]
        dns = ["{name}.svc"]
        [[service]]
        name = "w{i:02}"
        range = [8, 10]
        spiffe_id = "spiffe://example.org/w/{i}"
    """))
    assert [s.name for s in manifest.services] == ["w08", "w09", "w10"]
    assert [str(s) for s in manifest.services[2].sans] == ["DNS:w10", "DNS:w10.svc", "URI:spiffe://example.org/w/10"]
    with pytest.raises(ManifestError, match="only {name} and {i}"):
        parse_manifest('[[service]]\nname = "a"\ndns = ["{host}"]\n')


def test_a_server_and_a_client_share_a_name_and_a_kind_change_is_a_reissue(tmp_path: Path) -> None:
    from grpcpki.engine.manifest import apply_plan, plan

    pki = Pki.init(tmp_path / "pki", name="Apply CA")
    api = pki.issue(Role.SERVER, "api")
    manifest = parse_manifest(textwrap.dedent("""
        [[service]]
        name = "orders"
        [[service]]
        name = "orders"
        kind = "client"
        [[service]]
        name = "api"
        kind = "client"
    """))
    first = plan(pki, manifest)
    assert [(c.action, c.spec.role.value, c.spec.name) for c in first.changes] == [
        ("create", "server", "orders"), ("create", "client", "orders"), ("reissue", "client", "api"),
    ]
    assert first.changes[2].reason.startswith("kind server -> client") and first.changes[2].record == api
    applied = apply_plan(pki, first.changes)
    assert {(a.record.kind, a.record.name) for a in applied} == {("server", "orders"), ("client", "orders"),
                                                                  ("client", "api")}
    assert pki.inventory.active_leaf("api", "server") is None  # the server certificate was superseded
    again = plan(pki, manifest)
    assert again.changes == () and again.unchanged == 3
