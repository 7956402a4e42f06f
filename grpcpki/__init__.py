"""grpcpki: a PKI toolkit for gRPC.

The importable engine lives in :mod:`grpcpki.engine`; the CLI in :mod:`grpcpki.cli`;
the mTLS Greeter in :mod:`grpcpki.greeter`.
"""

__version__ = "0.1.0"
