"""A server and a client may share a name (orders); commands that need one role pick it, the
others take server/NAME or client/NAME and refuse an ambiguous NAME; old inventories migrate."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from day2_support import grpcpki_serve
from grpcpki.engine.inventory import SCHEMA_VERSION
from support import Result, assert_clean_error, run_grpcpki


def test_server_and_client_named_orders(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "orders", "--dns", "localhost").code == 0
    client = cli("issue", "client", "orders", "--spiffe-id", "spiffe://example.org/orders", "--json")
    assert client.code == 0, client.output
    # The server keeps certs/orders/; the client, second with that name, gets certs/orders+client/.
    assert json.loads(client.stdout)["chain_path"] == str(pki / "certs/orders+client/chain.pem")
    assert (pki / "certs/orders/chain.pem").is_file()
    listed = {(r["name"], r["kind"]) for r in json.loads(cli("list", "--json").stdout) if r["kind"] in ("server", "client")}
    assert listed == {("orders", "server"), ("orders", "client")}
    # Each kind is still unique.
    assert_clean_error(cli("issue", "client", "orders"), "client certificate 'orders' already exists", "client/orders")
    # serve takes the server, greet the client: mTLS between the two halves of `orders`.
    with grpcpki_serve(pki, "--name", "orders") as port:
        greeted = run_grpcpki("--pki", str(pki), "greet", "--name", "orders", "--server", f"localhost:{port}", "--json")
        assert greeted.code == 0, greeted.output
        assert "spiffe://example.org/orders" in greeted.stdout
    # Commands that take any certificate refuse the bare name and say how to choose.
    for args in (("inspect", "orders"), ("renew", "orders"), ("export", "orders", "--format", "pem"),
                 ("revoke", "orders"), ("doctor", "orders")):
        assert_clean_error(cli(*args), "'orders' is both a server and a client certificate", "server/orders")
    inspected = json.loads(cli("inspect", "client/orders", "--json").stdout)
    assert inspected["extended_key_usage"] == ["serverAuth", "clientAuth"]  # an X509-SVID: both
    assert inspected["inventory"]["name"] == "orders" and inspected["source"].endswith("orders+client/chain.pem")
    renewed = json.loads(cli("renew", "client/orders", "--force", "--json").stdout)
    assert [(c["name"], c["kind"], c["action"]) for c in renewed["certificates"]] == [("orders", "client", "renewed")]
    assert (pki / "certs/orders+client/cert.pem").is_file()  # a renewal stays where it was
    assert cli("doctor", "server/orders").code == 0
    assert_clean_error(cli("inspect", "server/nope"), "no active server certificate named 'nope'")
    # Revoking one half leaves the other; the name is plain again.
    assert cli("revoke", "client/orders").code == 0
    assert cli("inspect", "orders").code == 0
    assert_clean_error(cli("greet", "--name", "client/nope"), "no active client certificate named 'nope'")


def test_inventory_of_schema_1_migrates(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "orders").code == 0
    # Turn it into what a grpcpki from before this change wrote: schema 1, names unique across kinds.
    db = sqlite3.connect(pki / "inventory.db")
    db.executescript(
        "DROP TABLE alembic_version;"  # grpcpki before Alembic (issue 13) had no such table
        "DROP INDEX certificates_one_active_leaf_per_kind;"
        "CREATE UNIQUE INDEX certificates_one_active_leaf ON certificates(name)"
        " WHERE status = 'active' AND kind IN ('server', 'client');"
        "PRAGMA user_version = 1;"
    )
    db.close()
    assert cli("list").code == 0
    assert cli("issue", "client", "orders").code == 0
    db = sqlite3.connect(pki / "inventory.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert "certificates_one_active_leaf_per_kind" in indexes and "certificates_one_active_leaf" not in indexes
