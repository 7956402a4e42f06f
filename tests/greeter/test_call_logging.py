"""serve's per-call logging (issue 10): by default the first call of each identity is logged and the
rest counted, with the counts printed on exit; --log-calls logs every call; refusals always."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from greeter_support import Files, Served
from support import cli_env


def greet(server: Served, files: Files, *args: str, client: str = "client") -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grpcpki", "greet", "--server", server.address, "--interval", "0s",
         "--timeout", "5s", *files.client_args(client), *args],
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr


def test_default_logs_the_first_call_per_identity_and_counts_the_rest(serve: type[Served], files: Files) -> None:
    server = serve(*files.server_args(), "--allow", "spiffe://example.org/web")
    greet(server, files, "--to", "first", "--count", "3")
    greet(server, files, "--to", "again")
    greet(server, files, "--to", "outsider", client="intruder")  # not in --allow: always logged
    code, rest, stderr = server.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "OK SayHello('first') from spiffe://example.org/web" in stderr
    assert stderr.count("OK SayHello(") == 1, stderr
    assert "PERMISSION_DENIED SayHello('outsider')" in stderr
    assert "served 5 calls: 4 OK (from 1 identity), 1 PERMISSION_DENIED" in stderr
    stopped = json.loads(rest.strip().splitlines()[-1])
    assert stopped == {"event": "stopped", "calls": {"OK": 4, "PERMISSION_DENIED": 1}}


def test_log_calls_logs_every_call(serve: type[Served], files: Files) -> None:
    server = serve(*files.server_args(), "--log-calls")
    greet(server, files, "--to", "one", "--count", "2")
    greet(server, files, "--to", "two")
    _, _, stderr = server.stop(signal.SIGTERM)
    assert stderr.count("OK SayHello('one')") == 2 and "OK SayHello('two')" in stderr
    assert "served 3 calls: 3 OK (from 1 identity)" in stderr
