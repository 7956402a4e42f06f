"""Declarative manifests for ``grpcpki apply``: the CA, defaults and services in one TOML file.

A manifest says what should exist; :func:`plan` compares it with the inventory and
:func:`apply_plan` makes the difference real, through the store's batches (``Pki.transaction``:
one lock, one journal, one inventory commit per batch). For each service the plan is one of:

* ``create``  no active certificate has its name;
* ``reissue`` one does, but it drifted: other names (SANs), kind, usages or key type;
* ``renew``   it matches but is due (two thirds of its lifetime gone, ``renew_within`` of the
  manifest, or issued by an older CA generation: the rules of ``grpcpki renew``);
* unchanged   everything else. A second run right after the first changes nothing.

Certificates in the PKI that the manifest does not name are left alone (counted as
"unmanaged"): apply never revokes or deletes. The format is documented in docs/apply.md.
Errors name the file, the line and the key, like ``grpcpki.toml:12: [[service]] #3 dns: ...``.
"""

from __future__ import annotations

import functools
import os
import re
import string
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

# Reading a manifest and planning import neither cryptography nor SQLAlchemy (every module below
# is free of both): `grpcpki apply` with nothing to change never needs them
# (grpcpki/engine/applyplan.py, tests/speed/test_startup.py).
from grpcpki.engine import profiles
from grpcpki.engine.durations import parse_duration
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.keytypes import KeyType
from grpcpki.engine.names import San, leaf_sans, parse_san, validate_cert_name, validate_spiffe_id
from grpcpki.engine.profiles import Role
from grpcpki.engine.renewal_rules import Dated, due_reason

if TYPE_CHECKING:
    # concurrent.futures pulls in multiprocessing (~20 ms): imported where RSA keys are made.
    from concurrent.futures import ProcessPoolExecutor

    from grpcpki.engine.inventory import Record
    from grpcpki.engine.pki import Pki

MANIFEST_FILE = "grpcpki.toml"
# Services per store transaction: big enough that the journal's sync and the commit are
# amortised (bench/apply.py), small enough that a failure late in a huge manifest keeps the
# batches before it, and the next run carries on from there.
BATCH_SIZE = 500
# RSA keys are generated in worker processes once a batch has this many (an RSA-3072 key is
# ~100 ms of one core; ECDSA and Ed25519 keys are microseconds and stay in-process).
_RSA_PARALLEL_MIN = 4
_MAX_SERVICES = 1_000_000

_SERVICE_KEYS = {
    "name", "names", "count", "range", "columns", "rows", "kind", "dns", "ip", "uri", "spiffe_id", "days",
    "key_type", "also_client", "also_server", "name_as_san",
}
_DEFAULT_KEYS = {
    "kind", "dns", "ip", "uri", "spiffe_id", "days", "key_type", "also_client", "also_server", "name_as_san",
    "renew_within",
}
_CA_KEYS = {"name", "org", "key_type", "days", "intermediate", "encrypt"}
_ROW_COLUMNS = {"name", "kind", "dns", "ip", "uri", "spiffe_id", "days", "key_type"}
_TEMPLATED = ("dns", "ip", "uri", "spiffe_id")
_KEY_TYPES = {k.value: k for k in KeyType}
# (serverAuth, clientAuth) -> the usages as the inventory names them.
_EKUS = {
    (server, client): frozenset(u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted)
    for server in (False, True) for client in (False, True)
}
_ROLES = {r.value: r for r in Role}


class ManifestError(GrpcpkiError):
    """The manifest cannot be read or says something invalid; the message names file, line and key."""


# -- what a manifest says ----------------------------------------------------------------------
@dataclass(frozen=True)
class CaSpec:
    name: str = "grpcpki CA"
    org: str | None = None
    key_type: KeyType = KeyType.ECDSA_P256
    days: int = profiles.DEFAULT_CA_DAYS
    intermediate: bool = False
    encrypt: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    """One certificate the manifest asks for. ``sans`` are final (NAME included where it is one)."""

    name: str
    role: Role
    sans: tuple[San, ...]
    days: int
    key_type: KeyType
    also_client: bool
    also_server: bool
    where: str  # "grpcpki.toml:12 [[service]] #3", for messages

    @property
    def eku(self) -> frozenset[str]:
        # A leaf with a SPIFFE ID is an X509-SVID and gets both (profiles.leaf_eku_oids, X509-SVID 4.4).
        svid = False
        for san in self.sans:  # a loop, not any(genexpr): asked once per service of every plan
            if san.is_spiffe:
                svid = True
                break
        server = self.role is Role.SERVER or self.also_server or svid
        client = self.role is Role.CLIENT or self.also_client or svid
        return _EKUS[server, client]


@dataclass(frozen=True)
class Manifest:
    path: Path
    ca: CaSpec | None
    renew_within: timedelta | None
    services: tuple[ServiceSpec, ...]


# -- reading -------------------------------------------------------------------------------------
def load_manifest(path: Path | str) -> Manifest:
    """Read and check a manifest file; ManifestError (file, line, key) on anything wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(
            f"manifest {path} does not exist",
            "write one (docs/apply.md has an example) or name it: `grpcpki apply FILE`",
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"manifest {path} is a directory", f"point at the file, e.g. {path / MANIFEST_FILE}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}", "check the path and permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start})", "TOML files are UTF-8") from None
    return parse_manifest(text, path)


def parse_manifest(text: str, path: Path | str = MANIFEST_FILE) -> Manifest:
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line N, column M)": lead with file:line like every other error.
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        where = f"{path}:{match.group(1)}" if match else str(path)
        reason = message[: match.start()].strip() if match else message
        raise ManifestError(f"{where}: not valid TOML: {reason}", "see docs/apply.md for the format") from None
    return _Reader(data, _Locator(text, path)).manifest()


class _Locator:
    """Line numbers for TOML keys (tomllib keeps none): header lines of tables and arrays of
    tables, and ``key =`` lines inside each, so errors can say ``grpcpki.toml:12``."""

    _ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-]+)\s*\]\]")
    _TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        self._where: dict[tuple[str, int, str | None], str] = {}
        counts: dict[str, int] = {}
        current = ("", 0)
        for number, line in enumerate(text.splitlines(), start=1):
            if match := self._ARRAY.match(line):
                name = match.group(1)
                index = counts.get(name, 0)
                counts[name] = index + 1
                current = (name, index)
                self.headers[current] = number
            elif match := self._TABLE.match(line):
                current = (match.group(1), 0)
                self.headers[current] = number
            elif match := self._KEY.match(line):
                self.keys.setdefault((*current, match.group(1).strip('"')), number)

    def where(self, table: str, index: int = 0, key: str | None = None) -> str:
        # Asked once per service: a pattern's thousands of services share their entry's answer.
        cached = self._where.get((table, index, key))
        if cached is None:
            cached = self._where[table, index, key] = self._find(table, index, key)
        return cached

    def _find(self, table: str, index: int, key: str | None) -> str:
        line = self.keys.get((table, index, key)) if key else None
        if line is None:
            line = self.headers.get((table, index))
        label = {"": "", "service": f"[[service]] #{index + 1}"}.get(table, f"[{table}]")
        location = f"{self.path}:{line}" if line else str(self.path)
        parts = [p for p in (label, key) if p]
        return f"{location}: {' '.join(parts)}" if parts else location


class _Reader:
    def __init__(self, data: dict[str, Any], locator: _Locator) -> None:
        self.data = data
        self.at = locator

    def fail(self, message: str, table: str, index: int = 0, key: str | None = None, hint: str | None = None) -> ManifestError:
        return ManifestError(f"{self.at.where(table, index, key)}: {message}", hint or "see docs/apply.md for the format")

    def manifest(self) -> Manifest:
        unknown = set(self.data) - {"ca", "defaults", "service"}
        for key in sorted(unknown):
            raise self.fail(f"unknown key {key!r} (a manifest has [ca], [defaults] and [[service]])", "", key=key)
        ca = self._ca(self.data["ca"]) if "ca" in self.data else None
        defaults = self.data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.fail("must be a table: [defaults]", "", key="defaults")
        self._check_keys(defaults, _DEFAULT_KEYS, "defaults")
        renew_within = None
        if "renew_within" in defaults:
            renew_within = self._duration(defaults["renew_within"], "defaults", 0, "renew_within")
        entries = self.data.get("service", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail("must be an array of tables: [[service]]", "", key="service")
        services: list[ServiceSpec] = []
        # Names are unique per kind (issue 11): a service may be a server and a client under one name.
        seen: dict[tuple[str, str], str] = {}
        for index, entry in enumerate(entries):
            for spec in self._services(entry, index, defaults):
                kind_name = (spec.role.value, spec.name)
                if kind_name in seen:
                    raise ManifestError(
                        f"{spec.where}: {spec.role.value} name {spec.name!r} is already given at {seen[kind_name]}",
                        "each certificate name appears once per kind (server, client) in a manifest",
                    )
                seen[kind_name] = spec.where
                services.append(spec)
                if len(services) > _MAX_SERVICES:
                    raise self.fail(f"more than {_MAX_SERVICES:,} services", "service", index)
        return Manifest(self.at.path, ca, renew_within, tuple(services))

    def _check_keys(self, table: Mapping[str, Any], known: set[str], name: str, index: int = 0) -> None:
        for key in table:
            if key not in known:
                raise self.fail(f"unknown key {key!r}", name, index, key, f"known keys: {', '.join(sorted(known))}")

    # [ca]
    def _ca(self, table: object) -> CaSpec:
        if not isinstance(table, dict):
            raise self.fail("must be a table: [ca]", "", key="ca")
        self._check_keys(table, _CA_KEYS, "ca")
        spec = CaSpec()
        return CaSpec(
            name=self._string(table, "name", "ca", 0, spec.name),
            org=self._string(table, "org", "ca", 0, None) if "org" in table else None,
            key_type=self._key_type(table.get("key_type", spec.key_type.value), "ca", 0),
            days=self._days(table.get("days", spec.days), "ca", 0, maximum=36500),
            intermediate=self._bool(table, "intermediate", "ca", 0, False),
            encrypt=self._bool(table, "encrypt", "ca", 0, False),
        )

    # [[service]]
    def _services(self, entry: dict[str, Any], index: int, defaults: Mapping[str, Any]) -> Iterator[ServiceSpec]:
        self._check_keys(entry, _SERVICE_KEYS, "service", index)
        forms: list[str] = [k for k in ("names", "rows") if k in entry]
        if "name" in entry:
            forms.insert(0, "name")
        if len(forms) != 1:
            raise self.fail(
                "give exactly one of name, names and columns/rows" if forms else "missing name",
                "service", index, forms[1] if len(forms) > 1 else None,
                'e.g. name = "orders", names = ["orders", "billing"], or name = "worker-{i}" with count = 10',
            )
        merged = {k: v for k, v in defaults.items() if k != "renew_within"} | {
            k: v for k, v in entry.items() if k not in ("name", "names", "count", "range", "columns", "rows")
        }
        if forms[0] == "rows":
            yield from self._rows(entry, index, merged)
            return
        for name, number in self._names(entry, index):
            yield self._service(merged, name, number, index, {})

    def _names(self, entry: dict[str, Any], index: int) -> Iterator[tuple[str, int]]:
        if "names" in entry:
            names = entry["names"]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise self.fail("must be a non-empty list of strings", "service", index, "names")
            for key in ("count", "range"):
                if key in entry:
                    raise self.fail(f"{key} goes with a name pattern like \"worker-{{i}}\", not names", "service", index, key)
            for number, name in enumerate(names, start=1):
                yield name, number
            return
        name = entry["name"]
        if not isinstance(name, str):
            raise self.fail("must be a string", "service", index, "name")
        fields = _fields(name)
        if "count" in entry and "range" in entry:
            raise self.fail("give count or range, not both", "service", index, "range")
        if "count" in entry or "range" in entry:
            if fields != {"i"}:
                raise self.fail('a pattern needs "{i}" in the name, e.g. name = "worker-{i:03}"', "service", index, "name")
            if "count" in entry:
                count = entry["count"]
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= _MAX_SERVICES:
                    raise self.fail(f"must be a whole number from 1 to {_MAX_SERVICES:,}", "service", index, "count")
                first, last = 1, count
            else:
                bounds = entry["range"]
                if (
                    not isinstance(bounds, list) or len(bounds) != 2
                    or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
                    or not 0 <= bounds[0] <= bounds[1] or bounds[1] - bounds[0] >= _MAX_SERVICES
                ):
                    raise self.fail("must be [FIRST, LAST], whole numbers, FIRST <= LAST", "service", index, "range")
                first, last = bounds
            for number in range(first, last + 1):
                yield self._format(name, {"i": number}, "service", index, "name"), number
            return
        if fields:
            raise self.fail('"{i}" in a name needs count = N or range = [FIRST, LAST]', "service", index, "name")
        yield name, 1

    def _rows(self, entry: dict[str, Any], index: int, merged: dict[str, Any]) -> Iterator[ServiceSpec]:
        columns, rows = entry.get("columns"), entry["rows"]
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise self.fail('rows need columns = ["name", ...] first', "service", index, "columns")
        for column in columns:
            if column not in _ROW_COLUMNS:
                raise self.fail(f"unknown column {column!r}", "service", index, "columns",
                                f"columns: {', '.join(sorted(_ROW_COLUMNS))}")
        if "name" not in columns:
            raise self.fail('columns must include "name"', "service", index, "columns")
        if not isinstance(rows, list):
            raise self.fail("must be a list of rows, e.g. rows = [[\"orders\", \"10.0.0.7\"]]", "service", index, "rows")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, list) or len(row) != len(columns):
                raise self.fail(f"row {number} has {len(row) if isinstance(row, list) else 'no'} values for "
                                f"{len(columns)} columns", "service", index, "rows")
            values = dict(zip(columns, row, strict=True))
            name = values.pop("name")
            if not isinstance(name, str):
                raise self.fail(f"row {number}: the name must be a string", "service", index, "rows")
            yield self._service(merged | values, name, number, index, {"row": number})

    def _service(self, values: dict[str, Any], name: str, number: int, index: int, extra: dict[str, int]) -> ServiceSpec:
        where = self.at.where("service", index) + (f" row {extra['row']}" if extra else "") + f" ({name})"

        def at(key: str) -> str:
            # The line of the key itself (a row's values are on the rows line).
            if extra:
                return f"{self.at.where('service', index, 'rows')} row {extra['row']} ({name}) {key}"
            return f"{self.at.where('service', index, key)} ({name})"
        try:
            validate_cert_name(name)
        except GrpcpkiError as exc:
            raise ManifestError(f"{at('name')}: {exc.message}", exc.hint) from None
        kind = values.get("kind", "server")
        if kind not in ("server", "client"):
            raise self.fail(f"kind must be \"server\" or \"client\", not {kind!r}", "service", index, "kind")
        context = {"name": name, "i": number}
        sans: list[str | San] = []
        for key, prefix in (("dns", "dns:"), ("ip", "ip:"), ("uri", "uri:"), ("spiffe_id", "uri:")):
            raw = values.get(key)
            if raw is None or raw == []:
                continue  # not given (most services have no ip or uri)
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise self.fail("must be a string or a list of strings", "service", index, key)
            if key == "spiffe_id" and len(items) > 1:
                raise self.fail("one SPIFFE ID per certificate (the SPIFFE X.509-SVID spec)", "service", index, key)
            for item in items:
                value = self._format(item, context, "service", index, key)
                try:
                    if key == "spiffe_id":
                        value = validate_spiffe_id(value)
                    if key == "spiffe_id" and value == value.strip():
                        # What parse_san("uri:" + value) returns once validate_spiffe_id passed (its
                        # URI check runs validate_spiffe_id again), without a second look at each
                        # character: a third of the parse of a SPIFFE manifest (issue 10).
                        sans.append(San("uri", value))
                    else:
                        sans.append(parse_san(prefix + value))
                except GrpcpkiError as exc:
                    raise ManifestError(f"{at(key)}: {exc.message}", exc.hint) from None
        name_as_san = self._bool(values, "name_as_san", "service", index, True)
        try:
            final = leaf_sans(name, sans, name_as_san=name_as_san)
        except GrpcpkiError as exc:
            raise ManifestError(f"{where}: {exc.message}", (exc.hint or "").replace("--", "") or None) from None
        return ServiceSpec(
            name=name,
            role=_ROLES[kind],
            sans=final,
            days=self._days(values.get("days", profiles.DEFAULT_LEAF_DAYS), "service", index),
            key_type=self._key_type(values.get("key_type", KeyType.ECDSA_P256.value), "service", index),
            also_client=self._bool(values, "also_client", "service", index, False),
            also_server=self._bool(values, "also_server", "service", index, False),
            where=where,
        )

    # -- scalar checks
    def _format(self, template: str, context: dict[str, object], table: str, index: int, key: str) -> str:
        if "{" not in template and "}" not in template:
            return template  # nothing to fill in: what str.format would return
        fields = _fields(template, strict=False)
        if fields is None or not fields <= context.keys():
            raise self.fail(f"{template!r}: only {{name}} and {{i}} can be filled in", table, index, key)
        try:
            return template.format(**context)
        except (ValueError, KeyError, IndexError) as exc:
            raise self.fail(f"{template!r}: {exc}", table, index, key) from None

    def _string(self, table: Mapping[str, Any], key: str, name: str, index: int, default: str | None) -> Any:
        value = table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail("must be a non-empty string", name, index, key)
        return value

    def _bool(self, table: Mapping[str, Any], key: str, name: str, index: int, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail("must be true or false", name, index, key)
        return value

    def _days(self, value: object, name: str, index: int, maximum: int = 3650) -> int:
        if isinstance(value, str):
            delta = self._duration(value, name, index, "days")
            if delta % timedelta(days=1):
                raise self.fail(f"{value!r} is not a whole number of days", name, index, "days")
            value = delta.days
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
            raise self.fail(f"must be a number of days from 1 to {maximum} (or \"90d\")", name, index, "days")
        return value

    def _duration(self, value: object, name: str, index: int, key: str) -> timedelta:
        # A unit is required: a bare number is read as days in one tool and seconds in another.
        if not isinstance(value, str) or not value.strip()[-1:].isalpha():
            raise self.fail('must be a duration with a unit, such as "30d" or "12h"', name, index, key)
        try:
            return parse_duration(value)
        except GrpcpkiError as exc:
            raise self.fail(exc.message, name, index, key, exc.hint) from None

    def _key_type(self, value: object, name: str, index: int) -> KeyType:
        known = _KEY_TYPES.get(value) if isinstance(value, str) else None
        if known is not None:
            return known  # KeyType(value) without the enum's call machinery, once per service
        try:
            return KeyType(str(value))
        except ValueError:
            raise self.fail(
                f"unknown key type {value!r}", name, index, "key_type", f"one of: {', '.join(k.value for k in KeyType)}"
            ) from None


@functools.lru_cache(maxsize=256)
def _fields(template: str, *, strict: bool = True) -> frozenset[str] | None:
    """The placeholders of a str.format template; None if one is more than a plain name
    (``{name.attr}`` or ``{i[0]}`` could reach into Python objects). Cached: a pattern's
    templates are the same for each of its thousands of services."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None if not strict else frozenset({"<invalid>"})
    names = set()
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier():
            return None if not strict else frozenset({field_name})
        names.add(field_name)
    return frozenset(names)


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One thing apply will do (``action``: create, renew, reissue) and why."""

    action: str
    spec: ServiceSpec
    reason: str
    record: Record | None = None  # the certificate it renews or reissues

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "name": self.spec.name,
            "kind": self.spec.role.value,
            "reason": self.reason,
            "sans": [str(s) for s in self.spec.sans],
            "old_serial": self.record.serial if self.record else None,
        }


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    changes: tuple[Change, ...]
    unchanged: int
    unmanaged: int  # active leaves the manifest does not name: left alone
    create_ca: bool = False
    notes: tuple[str, ...] = ()

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest.path),
            "create_ca": self.create_ca,
            "create": self.count("create"),
            "renew": self.count("renew"),
            "reissue": self.count("reissue"),
            "unchanged": self.unchanged,
            "unmanaged": self.unmanaged,
            "notes": list(self.notes),
            "changes": [c.to_dict() for c in self.changes],
        }


class ActiveLeaf(Dated, Protocol):
    """What planning reads of an active leaf: an inventory ``Record`` (the full plan, under the
    lock), or a plain row read with the standard library (applyplan.py, the no-op path). The
    renewal rule's facts (generation and validity) come from ``Dated``."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def sans(self) -> tuple[str, ...]: ...
    @property
    def eku(self) -> tuple[str, ...]: ...
    @property
    def key_type(self) -> str: ...


class RootFacts(Protocol):
    """What the [ca] check reads of the current CA's root row."""

    @property
    def subject(self) -> str: ...
    @property
    def key_type(self) -> str: ...


Leaf = TypeVar("Leaf", bound=ActiveLeaf)


def plan(pki: Pki | None, manifest: Manifest, *, now: datetime | None = None) -> Plan:
    """Compare the manifest with the inventory (``pki`` None: no CA yet, everything is created)."""
    if pki is None:
        return Plan(manifest, tuple(Change("create", spec, "new") for spec in manifest.services), 0, 0, create_ca=True)
    generation = pki.generation
    decisions, unchanged, unmanaged = decide(
        manifest, pki.inventory.iter_records(kinds=("server", "client")), generation, now=now
    )
    changes = tuple(Change(action, spec, reason, record) for action, spec, reason, record in decisions)
    root = next((r for r in pki.inventory.iter_records(kinds=("root",)) if r.ca_generation == generation), None)
    return Plan(manifest, changes, unchanged, unmanaged, notes=tuple(ca_notes(manifest, root)))


def decide(
    manifest: Manifest, leaves: Iterable[Leaf], generation: int, *, now: datetime | None = None
) -> tuple[list[tuple[str, ServiceSpec, str, Leaf | None]], int, int]:
    """The plan's verdict over the active leaves (in any order): the changes (action, service,
    reason, the leaf it renews or reissues), how many services are unchanged, and how many active
    leaves the manifest does not name (left alone). The one algorithm that both the full plan
    and the no-op path (applyplan.py) run."""
    moment = now or datetime.now(UTC)
    # By (kind, name): a server and a client may share a name (issue 11).
    current = {(r.kind, r.name): r for r in leaves}
    wanted = {(spec.role.value, spec.name) for spec in manifest.services}
    changes: list[tuple[str, ServiceSpec, str, Leaf | None]] = []
    unchanged = 0
    for spec in manifest.services:
        kind = spec.role.value
        record = current.pop((kind, spec.name), None)
        other = ("client" if kind == "server" else "server", spec.name)
        if record is None and other in current and other not in wanted:
            # The manifest moved NAME to the other kind: a reissue of that certificate ("kind
            # server -> client"), not a second certificate beside it.
            record = current.pop(other)
        if record is None:
            changes.append(("create", spec, "new", None))
            continue
        drift = drift_reasons(spec, record)
        if drift:
            changes.append(("reissue", spec, "; ".join(drift), record))
            continue
        reason = due_reason(record, current_generation=generation, within=manifest.renew_within, now=moment)
        if reason is not None:
            changes.append(("renew", spec, reason, record))
        else:
            unchanged += 1
    return changes, unchanged, len(current)


def drift_reasons(spec: ServiceSpec, record: ActiveLeaf) -> list[str]:
    """How an active certificate differs from what the manifest asks for (empty: it does not)."""
    reasons = []
    # Role and KeyType are StrEnums: each member equals its text, so no .value (an enum property
    # lookup) on the way to "no drift", which is the answer for nearly every service.
    if record.kind != spec.role:
        reasons.append(f"kind {record.kind} -> {spec.role.value}")
    wanted = {str(s) for s in spec.sans}
    have = set(record.sans)
    if wanted != have:
        added = sorted(wanted - have)
        removed = sorted(have - wanted)
        reasons.append("names " + " ".join([f"+{n}" for n in added] + [f"-{n}" for n in removed]))
    if set(record.eku) != spec.eku:
        reasons.append(f"usages {','.join(sorted(record.eku)) or 'none'} -> {','.join(sorted(spec.eku))}")
    if record.key_type != spec.key_type:
        reasons.append(f"key type {record.key_type} -> {spec.key_type.value}")
    return reasons


def ca_notes(manifest: Manifest, root: RootFacts | None) -> Iterator[str]:
    """A CA that differs from [ca] is reported, never replaced: that is a rotation, with its own
    overlap phase (`grpcpki ca rotate`), or every issued certificate would stop working at once.
    ``root``: the current generation's active root, the first in expiry order, as the inventory
    records it (no certificate is parsed)."""
    if manifest.ca is None or root is None:
        return
    # startswith: a rotated CA's name carries a generation suffix (" G2").
    if not root.subject.startswith(f"CN={manifest.ca.name}"):
        yield (
            f"the CA is {root.subject!r}, the manifest's [ca] says name = {manifest.ca.name!r}: apply does not "
            "replace a CA (that is `grpcpki ca rotate begin`)"
        )
    if root.key_type != manifest.ca.key_type.value:
        yield (
            f"the CA key is {root.key_type}, the manifest's [ca] says {manifest.ca.key_type.value}: apply does "
            "not replace a CA (that is `grpcpki ca rotate begin`)"
        )


# -- applying ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applied:
    change: Change
    record: Record

    def to_dict(self) -> dict[str, object]:
        return self.change.to_dict() | {
            "serial": self.record.serial,
            "not_after": f"{self.record.not_after:%Y-%m-%dT%H:%M:%SZ}",
            "cert_path": str(self.record.cert_path) if self.record.cert_path else None,
        }


def create_ca(path: Path | str, spec: CaSpec, *, passphrase: bytes | None = None, **kwargs: Any) -> Pki:
    """The CA of a manifest's [ca], in a new PKI directory (``kwargs`` go to ``Pki.init``)."""
    from grpcpki.engine.pki import Pki

    return Pki.init(
        path, name=spec.name, org=spec.org, key_type=spec.key_type, days=spec.days,
        intermediate=spec.intermediate, passphrase=passphrase if spec.encrypt else None, **kwargs,
    )


def apply_plan(
    pki: Pki,
    changes: Sequence[Change],
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_signed: Callable[[Change], None] | None = None,
    on_batch: Callable[[Sequence[Applied]], None] | None = None,
    jobs: int | None = None,
) -> list[Applied]:
    """Make the changes, ``batch_size`` per store transaction (all of a batch, or none of it).

    ``on_signed`` is told as each certificate is made (for a progress bar), ``on_batch`` once a
    batch is committed (only what is on disk is reported as done). A failing batch raises;
    the batches before it stay applied, and the next run plans only what is left. ``jobs``:
    worker processes that sign and stage a big batch (engine/workers.py; None: one per CPU,
    1: all in this process).
    """
    done: list[Applied] = []
    if not changes:
        return done
    pki.signing_ca()  # unlock (and check) the CA once, before any work
    with _KeyPool() as keys:
        for start in range(0, len(changes), batch_size):
            batch = changes[start:start + batch_size]
            workers = pki.pool_workers(len(batch), jobs) if keys.idle else 0
            if workers:
                applied = _apply_pooled(pki, batch, workers=workers, now=now, on_signed=on_signed)
                done += applied
                if on_batch is not None:
                    on_batch(applied)
                continue
            key_pems = keys.generate(batch)
            applied = []
            with pki.transaction():
                ca = pki.signing_ca()
                leaves = []
                for change in batch:
                    spec = change.spec
                    leaves.append(ca.issue(
                        spec.role, spec.name, sans=spec.sans, name_as_san=False, days=spec.days,
                        key_type=spec.key_type, key_pem=key_pems.get((spec.role.value, spec.name)),
                        also_client=spec.also_client,
                        also_server=spec.also_server, now=now,
                    ))
                    if on_signed is not None:
                        on_signed(change)
                # What a change replaces is checked again under the lock: if another command revoked or
                # reissued it since the plan, store_leaves refuses the batch, saying so.
                records = pki.store_leaves(leaves, [change.record for change in batch])
                applied = [Applied(change, record) for change, record in zip(batch, records, strict=True) if record]
            done += applied
            if on_batch is not None:
                on_batch(applied)
    return done


def _apply_pooled(
    pki: Pki, batch: Sequence[Change], *, workers: int, now: datetime | None,
    on_signed: Callable[[Change], None] | None,
) -> list[Applied]:
    """One batch signed and staged by forked workers (Pki.store_pooled): keys of every type
    are made there, so _KeyPool is not needed."""
    from grpcpki.engine.pki import LeafRequest

    requests = [
        LeafRequest(change.spec.role, change.spec.name, change.spec.sans, change.spec.days, change.spec.key_type,
                    also_client=change.spec.also_client, also_server=change.spec.also_server, name_as_san=False)
        for change in batch
    ]
    with pki.transaction():
        # What a change replaces is checked again under the lock: if another command revoked or
        # reissued it since the plan, store_pooled refuses the batch, saying so.
        records = pki.store_pooled(
            requests, [change.record for change in batch], workers=workers, now=now,
            on_signed=None if on_signed is None else lambda index, _info: on_signed(batch[index]),
        )
    return [Applied(change, record) for change, record in zip(batch, records, strict=True) if record]


class _KeyPool:
    """RSA keys for a batch from worker processes; other key types are made by ``CA.issue``."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    @property
    def idle(self) -> bool:
        """No executor started: its threads would keep Pki.store_pooled from forking."""
        return self._pool is None

    def __enter__(self) -> _KeyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def generate(self, batch: Iterable[Change]) -> dict[tuple[str, str], bytes]:
        """RSA keys by (kind, name)."""
        rsa = [c.spec for c in batch if c.spec.key_type.is_rsa]
        workers = min(os.cpu_count() or 1, 8)
        if len(rsa) < _RSA_PARALLEL_MIN or workers < 2:
            return {}
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=workers)
        pems = self._pool.map(_rsa_key_pem, [s.key_type.value for s in rsa], chunksize=4)
        return {(spec.role.value, spec.name): pem for spec, pem in zip(rsa, pems, strict=True)}


def _rsa_key_pem(key_type: str) -> bytes:
    from grpcpki.engine.keys import generate_key, private_key_pem

    return private_key_pem(generate_key(KeyType(key_type)))


__all__ = [
    "Applied",
    "BATCH_SIZE",
    "CaSpec",
    "Change",
    "MANIFEST_FILE",
    "Manifest",
    "ManifestError",
    "Plan",
    "ServiceSpec",
    "apply_plan",
    "ca_notes",
    "create_ca",
    "decide",
    "drift_reasons",
    "load_manifest",
    "parse_manifest",
    "plan",
]

