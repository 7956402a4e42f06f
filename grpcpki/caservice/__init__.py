"""The CA service as a gRPC part: ``grpcpki.ca.v1.CertificateAuthority`` (protos/grpcpki/ca/v1/ca.proto).

:mod:`grpcpki.caservice.server` serves it (``grpcpki ca-server``); :mod:`grpcpki.caservice.client`
calls it (``grpcpki enroll``, ``grpcpki renew --daemon``). The decisions (tokens, policy, audit)
live in the engine (engine/enrollment.py), which knows nothing of gRPC. Import grpc only here.
"""
