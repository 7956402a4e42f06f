"""Generated Greeter stubs (helloworld.proto). Do not edit: run ``python protos/generate.py``.

Generated into this real package path so the ``_pb2_grpc`` module imports
``grpcpki.greeter._proto.helloworld_pb2`` absolutely (see the script's docstring).
Runtime floors, checked by the stubs at import time: protobuf >= 7.35.1 (the gencode version
``ValidateProtobufRuntimeVersion`` asks for) and grpcio >= 1.85.1 (``GRPC_GENERATED_VERSION``).
"""
