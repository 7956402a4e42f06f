"""Team-scale tests: the throwaway PostgreSQL server lives in pg_support.py (a unique module name)."""

from pg_support import postgres, postgres_db  # noqa: F401
