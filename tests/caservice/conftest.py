"""CA service tests: the fixtures live in caservice_support.py (a unique module name, importable from the tests)."""

from caservice_support import service, setup  # noqa: F401
