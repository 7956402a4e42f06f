"""PKCS#11 fixtures live in hsm_support.py (a unique module name); pytest finds them here."""

from hsm_support import serve, softhsm  # noqa: F401
