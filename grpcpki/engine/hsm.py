"""CA keys on a PKCS#11 token (an HSM, a smart card, SoftHSM2): generated there, never extractable.

A token key is named by an RFC 7512 PKCS#11 URI, ``pkcs11:token=LABEL;object=LABEL[;id=%01..]``,
which the PKI directory records in ``ca/gN/root.key.uri`` (or ``intermediate.key.uri``) in place
of a key file. :class:`TokenECKey` and :class:`TokenRSAKey` subclass cryptography's private-key
types, so ``CertificateBuilder.sign()`` and ``CertificateRevocationListBuilder.sign()`` take them
as they take a key from a file: every leaf, CRL and cross certificate is signed on the token.

Where the token is and how to log in never comes from argv (other users read it in ps):

* ``GRPCPKI_PKCS11_MODULE``: the vendor's PKCS#11 library (SoftHSM2:
  ``/usr/lib/softhsm/libsofthsm2.so``), else the URI's ``module-path`` query attribute.
* the user PIN: ``--pin-file`` / ``GRPCPKI_PKCS11_PIN_FILE``, else ``GRPCPKI_PKCS11_PIN``, else the
  URI's ``pin-source`` (a file), else a prompt on a terminal. A ``pin-value`` in the URI is refused.

python-pkcs11 (the optional extra ``grpcpki[hsm]``) is imported only here and only when a token
is used, so ``grpcpki --help`` and every file-key command run without it.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, unquote, unquote_to_bytes

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from grpcpki.engine.errors import GrpcpkiError, KeyMismatchError
from grpcpki.engine.keys import KeyType

if TYPE_CHECKING:
    import pkcs11
    from cryptography.utils import Buffer

MODULE_ENV = "GRPCPKI_PKCS11_MODULE"
PIN_ENV = "GRPCPKI_PKCS11_PIN"
PIN_FILE_ENV = "GRPCPKI_PKCS11_PIN_FILE"
URI_SUFFIX = ".uri"
INSTALL_HINT = "pip install 'grpcpki[hsm]'"
INTERMEDIATE_SUFFIX = "-intermediate"

# RFC 7512 2.3: path attributes grpcpki understands. The rest of the standard set (slot-id,
# library-*) selects among several modules or slots, which one module path per process makes
# moot; anything unknown is refused rather than ignored, since ignoring a selector could pick
# the wrong key for a CA.
_PATH_ATTRIBUTES = ("token", "object", "id", "type", "serial", "manufacturer", "model")
_QUERY_ATTRIBUTES = ("module-path", "pin-source")
# RFC 3986 unreserved characters plus those RFC 7512 2.3 lets a value keep unescaped.
_SAFE = "-._~:[]@!$'()*+,="


class TokenError(GrpcpkiError):
    """A PKCS#11 token cannot be used: module, token, PIN, object label or the library itself."""


# == the URI =====================================================================================
@dataclass(frozen=True)
class Pkcs11Uri:
    """An RFC 7512 PKCS#11 URI naming one key on one token."""

    token: str
    object: str
    id: bytes | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """Parse ``pkcs11:token=...;object=...``; TokenError names what is wrong."""
        example = "pkcs11:token=grpcpki;object=ca-root"
        if not text.startswith("pkcs11:"):
            raise TokenError(f"{text!r} is not a PKCS#11 URI", f"write it as {example} (RFC 7512)")
        path, _, query = text[len("pkcs11:"):].partition("?")
        values: dict[str, str | bytes] = {}
        for part, separator, allowed in ((path, ";", _PATH_ATTRIBUTES), (query, "&", _QUERY_ATTRIBUTES)):
            for item in filter(None, part.split(separator)):
                name, equals, raw = item.partition("=")
                if name == "pin-value":
                    # RFC 7512 allows it, but a URI is a command-line argument: argv is readable by every user.
                    raise TokenError(
                        "a PIN in the PKCS#11 URI (pin-value) would be visible to every user in the process list",
                        f"remove it and set {PIN_FILE_ENV} or {PIN_ENV}, or pass --pin-file",
                    )
                if not equals or name not in allowed:
                    raise TokenError(
                        f"unsupported attribute {name!r} in PKCS#11 URI {text!r}",
                        f"use {', '.join(_PATH_ATTRIBUTES)} (separated by ';') and "
                        f"?{'&'.join(_QUERY_ATTRIBUTES)}; e.g. {example}",
                    )
                if name in values:
                    raise TokenError(f"attribute {name!r} appears twice in PKCS#11 URI {text!r}", f"e.g. {example}")
                # id is raw bytes (often %-escaped binary); everything else is UTF-8 text.
                try:
                    values[name] = unquote_to_bytes(raw) if name == "id" else unquote(raw, errors="strict")
                except UnicodeDecodeError:
                    raise TokenError(f"the {name}= value in PKCS#11 URI {text!r} is not UTF-8", "fix the %-escapes") from None
        if values.get("type", "private") != "private":
            raise TokenError(
                f"the PKCS#11 URI names a {values['type']!r} object, but a CA key is a private key",
                "drop type= or write type=private",
            )
        for required in ("token", "object"):
            if not values.get(required):
                raise TokenError(
                    f"the PKCS#11 URI {text!r} has no {required}= attribute",
                    f"name the token label and the key's object label, e.g. {example}",
                )

        def text_value(name: str) -> str | None:
            value = values.get(name)
            return value if isinstance(value, str) else None

        key_id = values.get("id")
        return cls(
            token=str(values["token"]), object=str(values["object"]),
            id=key_id if isinstance(key_id, bytes) and key_id else None,
            serial=text_value("serial"), manufacturer=text_value("manufacturer"), model=text_value("model"),
            module_path=text_value("module-path"), pin_source=text_value("pin-source"),
        )

    def __str__(self) -> str:
        path = [f"token={quote(self.token, safe=_SAFE)}", f"object={quote(self.object, safe=_SAFE)}"]
        if self.id:
            path.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        for name in ("serial", "manufacturer", "model"):
            value = getattr(self, name)
            if value:
                path.append(f"{name}={quote(value, safe=_SAFE)}")
        text = "pkcs11:" + ";".join(path)
        query = [f"{name}={quote(value, safe=_SAFE + '/')}" for name, value in
                 (("module-path", self.module_path), ("pin-source", self.pin_source)) if value]
        return text + ("?" + "&".join(query) if query else "")

    def intermediate(self) -> Pkcs11Uri:
        """Where the issuing intermediate's key goes when this URI names the root's."""
        return replace(self, object=self.object + INTERMEDIATE_SUFFIX, id=None)

    def with_id(self, key_id: bytes) -> Pkcs11Uri:
        return replace(self, id=key_id)


def is_key_uri_file(path: Path) -> bool:
    """Does ``path`` name a file holding a PKCS#11 URI (``root.key.uri``) rather than a key?"""
    return path.name.endswith(".key" + URI_SUFFIX)


# == logging in ==================================================================================
PinPrompt = Callable[[str], bytes]


@dataclass(frozen=True)
class TokenLogin:
    """How to reach tokens: the PKCS#11 module and the user PIN. The PIN is never printed."""

    module: str | None = None
    pin_file: str | None = None
    pin: bytes | None = field(default=None, repr=False)
    prompt: PinPrompt | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, *, pin_file: str | None = None, prompt: PinPrompt | None = None) -> TokenLogin:
        """``pin_file`` (from --pin-file) wins over the environment."""
        env_pin = os.environ.get(PIN_ENV)
        return cls(
            module=os.environ.get(MODULE_ENV) or None,
            pin_file=pin_file or os.environ.get(PIN_FILE_ENV) or None,
            pin=env_pin.encode() if env_pin else None,
            prompt=prompt,
        )

    def module_for(self, uri: Pkcs11Uri) -> str:
        module = self.module or uri.module_path
        if not module:
            raise TokenError(
                "no PKCS#11 module to reach the token with",
                f"set {MODULE_ENV} to the token vendor's library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
            )
        if not Path(module).is_file():
            raise TokenError(
                f"the PKCS#11 module {module} does not exist",
                f"check {MODULE_ENV} (SoftHSM2's is /usr/lib/softhsm/libsofthsm2.so, from Debian's softhsm2)",
            )
        return module

    def pin_for(self, uri: Pkcs11Uri) -> bytes:
        """--pin-file / GRPCPKI_PKCS11_PIN_FILE, then GRPCPKI_PKCS11_PIN, then the URI's pin-source, then a prompt."""
        pin_file = self.pin_file or (uri.pin_source if self.pin is None else None)
        if pin_file:
            path = Path(pin_file.removeprefix("file:"))
            try:
                # Files written with `echo` end in a newline that is not part of the PIN.
                pin = path.read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise TokenError(
                    f"cannot read the PIN file {path}: {exc.strerror}",
                    f"check --pin-file / {PIN_FILE_ENV}",
                ) from None
        elif self.pin is not None:
            pin = self.pin
        elif self.prompt is not None:
            pin = self.prompt(f"PIN for token {uri.token!r}")
        else:
            raise TokenError(
                f"no PIN for the PKCS#11 token {uri.token!r}",
                f"set {PIN_FILE_ENV} (a file holding the PIN) or {PIN_ENV}, or pass --pin-file",
            )
        if not pin:
            raise TokenError(f"the PIN for the PKCS#11 token {uri.token!r} is empty", "use the token's user PIN")
        return pin


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise TokenError(
            "python-pkcs11 is not installed, so grpcpki cannot use a PKCS#11 token", INSTALL_HINT
        ) from None
    return pkcs11


# One logged-in session per token and process: PKCS#11 logins are per application (C_Login on a
# second session fails with CKR_USER_ALREADY_LOGGED_IN), and a session is not safe to share
# between threads mid-operation, hence the lock around every call.
_sessions: dict[tuple[str, str, str | None], pkcs11.Session] = {}
_lock = threading.RLock()


def open_session(uri: Pkcs11Uri, login: TokenLogin | None = None) -> pkcs11.Session:
    """A read-write session on the URI's token, logged in as the user (cached per process)."""
    login = login or TokenLogin.from_env()
    pkcs11 = _pkcs11()
    module = login.module_for(uri)
    cache_key = (module, uri.token, uri.serial)
    with _lock:
        session = _sessions.get(cache_key)
        if session is not None:
            return session
        try:
            library = pkcs11.lib(module)
        except pkcs11.PKCS11Error as exc:
            raise TokenError(
                f"cannot load the PKCS#11 module {module}: {exc}",
                f"point {MODULE_ENV} at the token vendor's PKCS#11 library (.so)",
            ) from None
        token = _find_token(pkcs11, library, uri, module)
        pin = login.pin_for(uri)
        try:
            # python-pkcs11 takes the PIN as text and encodes it as UTF-8 (PKCS#11 CK_UTF8CHAR).
            session = token.open(rw=True, user_pin=pin.decode("utf-8", errors="strict"))
        except UnicodeDecodeError:
            raise TokenError(f"the PIN for the PKCS#11 token {uri.token!r} is not UTF-8 text", "check the PIN file") from None
        except pkcs11.PinIncorrect:
            raise TokenError(
                f"wrong PIN for the PKCS#11 token {uri.token!r}",
                f"check the PIN file or {PIN_ENV}; repeated wrong PINs lock the token",
            ) from None
        except pkcs11.PinLocked:
            raise TokenError(
                f"the user PIN of the PKCS#11 token {uri.token!r} is locked after too many wrong tries",
                "the token's security officer must unlock it (e.g. softhsm2-util has no unlock: re-init the token)",
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"cannot log in to the PKCS#11 token {uri.token!r}: {_describe(exc)}") from None
        _sessions[cache_key] = session
        return session


def _find_token(pkcs11: Any, library: Any, uri: Pkcs11Uri, module: str) -> Any:
    try:
        tokens = list(library.get_tokens(token_label=uri.token))
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"cannot list the tokens of {module}: {_describe(exc)}") from None

    def matches(token: Any) -> bool:
        return all(
            wanted is None or str(actual).strip() == wanted
            for wanted, actual in (
                (uri.serial, token.serial.decode(errors="replace") if isinstance(token.serial, bytes) else token.serial),
                (uri.manufacturer, token.manufacturer_id),
                (uri.model, token.model),
            )
        )

    tokens = [t for t in tokens if matches(t)]
    if not tokens:
        try:
            labels = sorted({t.label for t in library.get_tokens() if t.label})
        except pkcs11.PKCS11Error:
            labels = []
        known = f"tokens there: {', '.join(labels)}" if labels else "it has no initialised token"
        raise TokenError(
            f"no PKCS#11 token labelled {uri.token!r} in {module} ({known})",
            "fix token= in the URI, or initialise the token first (SoftHSM2: softhsm2-util --init-token --free "
            f"--label {uri.token} ...)",
        )
    if len(tokens) > 1:
        raise TokenError(
            f"{len(tokens)} PKCS#11 tokens are labelled {uri.token!r} in {module}",
            "add serial=... to the URI to pick one",
        )
    return tokens[0]


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# == keys ========================================================================================
def generate_keys(uris: Sequence[Pkcs11Uri], key_type: KeyType, login: TokenLogin | None = None) -> list[TokenKey]:
    """Generate one non-extractable key pair per URI; all labels are checked free before any is made.

    If a later generation fails, the keys already made in this call are destroyed again.
    """
    _check_generatable(key_type)
    labels = [u.object for u in uris]
    if len(set(zip(labels, (u.token for u in uris), strict=True))) != len(uris):
        raise TokenError(f"two CA keys would get the same object label on the token: {labels}")
    for uri in uris:
        session = open_session(uri, login)
        with _lock:
            taken = _objects(session, uri.object)
        if taken:
            raise TokenError(
                f"the PKCS#11 token {uri.token!r} already holds an object labelled {uri.object!r}",
                "pick another object= label: grpcpki never reuses or overwrites a key on a token",
            )
    made: list[TokenKey] = []
    try:
        for uri in uris:
            made.append(_generate(uri, key_type, open_session(uri, login)))
    except BaseException:
        for key in made:
            key.destroy()
        raise
    return made


def first_free(uri: Pkcs11Uri, login: TokenLogin | None = None) -> Pkcs11Uri:
    """``uri``, or ``uri`` with -2, -3... appended to its object label: the first whose label (and
    that label's ``-intermediate``) the token does not hold yet, so a suggested command works as
    printed. Without the PIN at hand (it is never prompted for here), ``uri`` unchecked."""
    try:
        session = open_session(uri, replace(login or TokenLogin.from_env(), prompt=None))
    except TokenError:
        return uri
    for number in range(1, 100):
        candidate = uri if number == 1 else replace(uri, object=f"{uri.object}-{number}")
        with _lock:
            if not _objects(session, candidate.object) and not _objects(session, candidate.intermediate().object):
                return candidate
    return uri


def _check_generatable(key_type: KeyType) -> None:
    if key_type is KeyType.ED25519:
        raise TokenError(
            "grpcpki signs with ECDSA or RSA keys on a PKCS#11 token, not Ed25519",
            "use --key-type ecdsa-p256 (the default), ecdsa-p384 or rsa-*",
        )


_CURVES = {KeyType.ECDSA_P256: "secp256r1", KeyType.ECDSA_P384: "secp384r1"}


def _generate(uri: Pkcs11Uri, key_type: KeyType, session: pkcs11.Session) -> TokenKey:
    pkcs11 = _pkcs11()
    from pkcs11 import Attribute, MechanismFlag

    key_id = uri.id or secrets.token_bytes(8)
    # CKA_SENSITIVE and CKA_EXTRACTABLE false: the token never reveals the key, in clear or
    # wrapped (PKCS#11 3.0 section 4.9). A CA key only signs, so no decrypt/unwrap/derive either.
    private_template = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.PRIVATE: True,
    }
    capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
    with _lock:
        try:
            if key_type in _CURVES:
                from pkcs11.util.ec import encode_named_curve_parameters

                parameters = session.create_domain_parameters(
                    pkcs11.KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type])},
                    local=True,
                )
                public, private = parameters.generate_keypair(
                    id=key_id, label=uri.object, store=True, capabilities=capabilities,
                    private_template=private_template,
                )
            else:
                bits = int(key_type.value.split("-")[1])
                public, private = session.generate_keypair(
                    pkcs11.KeyType.RSA, bits, id=key_id, label=uri.object, store=True, capabilities=capabilities,
                    private_template=private_template,
                    # 65537: the only public exponent every verifier accepts (RFC 8017 recommends it).
                    public_template={Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                )
        except pkcs11.PKCS11Error as exc:
            raise TokenError(
                f"the PKCS#11 token {uri.token!r} could not generate a {key_type.value} key: {_describe(exc)}",
                "check that the token supports this key type (--key-type) and has room for another key",
            ) from None
        # Some tokens quietly ignore template attributes; a CA key that could leave is refused.
        if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
            private.destroy()
            public.destroy()
            raise TokenError(
                f"the PKCS#11 token {uri.token!r} made the key extractable despite CKA_EXTRACTABLE=false",
                "use a token that honours CKA_SENSITIVE and CKA_EXTRACTABLE",
            )
    return _wrap(uri.with_id(key_id), private, public)


def load_key(uri: Pkcs11Uri | str, login: TokenLogin | None = None) -> TokenKey:
    """The key a URI names, as a cryptography private key whose ``sign()`` runs on the token."""
    if isinstance(uri, str):
        uri = Pkcs11Uri.parse(uri)
    pkcs11 = _pkcs11()
    session = open_session(uri, login)
    with _lock:
        private = _one(session, uri, pkcs11.ObjectClass.PRIVATE_KEY)
        public = _one(session, uri, pkcs11.ObjectClass.PUBLIC_KEY)
    return _wrap(uri, private, public)


def _objects(session: pkcs11.Session, label: str) -> list[Any]:
    from pkcs11 import Attribute

    return list(session.get_objects({Attribute.LABEL: label}))


def _one(session: pkcs11.Session, uri: Pkcs11Uri, object_class: Any) -> Any:
    from pkcs11 import Attribute

    template: dict[Any, Any] = {Attribute.CLASS: object_class, Attribute.LABEL: uri.object}
    if uri.id:
        template[Attribute.ID] = uri.id
    found = list(session.get_objects(template))
    what = "private key" if object_class == _pkcs11().ObjectClass.PRIVATE_KEY else "public key"
    if not found:
        raise TokenError(
            f"the PKCS#11 token {uri.token!r} has no {what} labelled {uri.object!r}"
            + (f" with id {uri.id.hex()}" if uri.id else ""),
            "check the token and object= in the URI; a key deleted from the token cannot be recovered",
        )
    if len(found) > 1:
        raise TokenError(
            f"{len(found)} {what}s on the PKCS#11 token {uri.token!r} are labelled {uri.object!r}",
            "add id=... to the URI to pick one",
        )
    return found[0]


def _wrap(uri: Pkcs11Uri, private: Any, public: Any) -> TokenKey:
    from pkcs11 import KeyType as P11KeyType

    if private.key_type == P11KeyType.EC:
        from pkcs11.util.ec import encode_ec_public_key

        ec_public = serialization.load_der_public_key(encode_ec_public_key(public))
        assert isinstance(ec_public, ec.EllipticCurvePublicKey)
        return TokenECKey(uri, private, ec_public)
    if private.key_type == P11KeyType.RSA:
        from pkcs11 import Attribute

        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"), int.from_bytes(public[Attribute.MODULUS], "big")
        )
        return TokenRSAKey(uri, private, numbers.public_key())
    raise TokenError(
        f"the key {uri.object!r} on the PKCS#11 token {uri.token!r} is a {private.key_type.name} key",
        "a CA key on a token must be ECDSA or RSA",
    )


def _not_extractable(uri: Pkcs11Uri) -> TokenError:
    return TokenError(
        f"the CA key lives on the PKCS#11 token {uri.token!r} and cannot be exported",
        "it signs in place; back up the token with the vendor's tools if it must be copied",
    )


class TokenKey:
    """What both token key classes share: the URI, the token object and its public key, a
    signing call, destroy(), and refusing to give the private key out."""

    uri: Pkcs11Uri
    _private: Any
    _public: Any  # the subclass's public key type

    def __init__(self, uri: Pkcs11Uri, private: Any, public: Any) -> None:
        self.uri = uri
        self._private = private
        self._public = public

    @property
    def key_size(self) -> int:
        return int(self._public.key_size)

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise _not_extractable(self.uri)

    # A copy is the same handle on the same token object: there is no key material to copy.
    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def _sign_on_token(self, data: bytes, mechanism: Any) -> bytes:
        pkcs11 = _pkcs11()
        with _lock:
            try:
                return bytes(self._private.sign(data, mechanism=mechanism))
            except pkcs11.PKCS11Error as exc:
                raise TokenError(
                    f"the PKCS#11 token {self.uri.token!r} refused to sign with {self.uri.object!r}: {_describe(exc)}",
                    "check that the token is present and the key still there",
                ) from None

    def destroy(self) -> None:
        """Delete this key pair from the token (only for undoing a failed init or rotation)."""
        pkcs11 = _pkcs11()
        with _lock:
            session = self._private.session
            for object_class in (pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.ObjectClass.PUBLIC_KEY):
                try:
                    _one(session, self.uri, object_class).destroy()
                except (TokenError, pkcs11.PKCS11Error):
                    pass


def _digest(data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    # Hash here and sign the digest with the raw mechanisms (CKM_ECDSA, CKM_RSA_PKCS): every
    # token has those, while the hash-and-sign ones (CKM_ECDSA_SHA256...) are optional.
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


class TokenECKey(TokenKey, ec.EllipticCurvePrivateKey):
    """An EC private key on a token: cryptography's builders sign with it like any other."""

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TokenError(f"a token EC key signs only ECDSA, not {type(signature_algorithm).__name__}")
        algorithm = signature_algorithm.algorithm
        digest = bytes(data) if isinstance(algorithm, utils.Prehashed) else _digest(bytes(data), algorithm)
        from pkcs11 import Mechanism

        # PKCS#11 returns r || s, each as long as the curve order (PKCS#11 3.0 section 2.3.1);
        # X.509 wants the DER Ecdsa-Sig-Value SEQUENCE { r, s } of RFC 3279 2.2.3.
        raw = self._sign_on_token(digest, Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TokenError("a CA key on a token only signs", "use a separate key for key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise _not_extractable(self.uri)


# RFC 8017 9.2 note 1: the DER DigestInfo prefix for each hash, for CKM_RSA_PKCS (which pads
# and signs whatever it is given, so the DigestInfo must be built here).
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


class TokenRSAKey(TokenKey, rsa.RSAPrivateKey):
    """An RSA private key on a token, signing PKCS#1 v1.5 (what X.509 builders ask for)."""

    def sign(
        self,
        data: Buffer,
        padding_: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | utils.Prehashed | utils.NoDigestInfo,
    ) -> bytes:
        if not isinstance(padding_, padding.PKCS1v15) or not isinstance(algorithm, hashes.HashAlgorithm):
            raise TokenError("a token RSA key signs PKCS#1 v1.5 over SHA-2 here", "use the default signature settings")
        prefix = _DIGEST_INFO.get(algorithm.name)
        if prefix is None:
            raise TokenError(f"a token RSA key signs with SHA-256, -384 or -512, not {algorithm.name}")
        from pkcs11 import Mechanism

        return self._sign_on_token(prefix + _digest(bytes(data), algorithm), Mechanism.RSA_PKCS)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise TokenError("a CA key on a token only signs", "use a separate key for decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise _not_extractable(self.uri)


def check_pair(key: TokenKey, public_key: object) -> None:
    """Raise unless the token key is the one a certificate's public key belongs to."""
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(*der)  # type: ignore[attr-defined]
    theirs = public_key.public_bytes(*der)  # type: ignore[attr-defined]
    if mine != theirs:
        raise KeyMismatchError(
            f"the key {key.uri.object!r} on the PKCS#11 token {key.uri.token!r} does not belong to the CA certificate",
            "check object= and id= in the .key.uri file",
        )


__all__ = [
    "MODULE_ENV",
    "PIN_ENV",
    "PIN_FILE_ENV",
    "Pkcs11Uri",
    "TokenECKey",
    "TokenError",
    "TokenKey",
    "TokenLogin",
    "TokenRSAKey",
    "first_free",
    "generate_keys",
    "is_key_uri_file",
    "load_key",
    "open_session",
]
