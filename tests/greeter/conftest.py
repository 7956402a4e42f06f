"""Greeter fixtures live in greeter_support.py (a unique module name); pytest finds them here."""

from greeter_support import ca, files, mtls_server, serve  # noqa: F401
