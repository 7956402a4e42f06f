"""Interop fixtures live in interop_support.py (a unique module name); pytest finds them here."""

from interop_support import grpcpki_serve, other_pki, pki  # noqa: F401
