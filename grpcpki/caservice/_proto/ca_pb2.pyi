from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "kind")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    kind: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., kind: _Optional[str] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class CertificateResponse(_message.Message):
    __slots__ = ("name", "kind", "serial", "chain_pem", "trust_bundle_pem", "not_before_unix", "not_after_unix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    serial: str
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_before_unix: int
    not_after_unix: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., serial: _Optional[str] = ..., chain_pem: _Optional[bytes] = ..., trust_bundle_pem: _Optional[bytes] = ..., not_before_unix: _Optional[int] = ..., not_after_unix: _Optional[int] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("trust_bundle_pem", "issuing_ca_pem")
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    ISSUING_CA_PEM_FIELD_NUMBER: _ClassVar[int]
    trust_bundle_pem: bytes
    issuing_ca_pem: bytes
    def __init__(self, trust_bundle_pem: _Optional[bytes] = ..., issuing_ca_pem: _Optional[bytes] = ...) -> None: ...

class GetCRLRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CRL(_message.Message):
    __slots__ = ("crl_pem",)
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    crl_pem: bytes
    def __init__(self, crl_pem: _Optional[bytes] = ...) -> None: ...
