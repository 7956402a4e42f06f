"""CA service tests: the fixtures live in caservice_support.py (a unique module name, importable from the tests)
and, for the replicas on PostgreSQL, pg_support.py."""

from caservice_support import service, setup  # noqa: F401
from pg_support import postgres  # noqa: F401
