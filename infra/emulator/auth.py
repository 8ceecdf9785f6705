"""Registered Ed25519 keys and the verification of the SDK's two request signatures.

REST (``/v2/public/...``) requests are signed after the HTTP message signatures draft:
``Content-Digest: sha-256=:<b64>:``, ``Signature-Input: encord-sig=("@method" "@request-target"
"content-digest");created=<epoch>;keyid="<hex public key>";alg="ed25519"`` and
``Signature: encord-sig=:<b64>:``. The signed text is four lines; the request target is the raw,
undecoded path and query exactly as sent.

RPC (``POST /public``) requests carry ``Authorization: <hex public key>:<hex signature>`` where the
signature is over the SHA-256 digest of the raw body.

Failures raise ApiError 401 (the SDK's AuthenticationError); project access is checked by the API
layer with ``RegisteredKey.allows`` and refused with 403 (AuthorisationError).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.emulator.errors import ApiError

# How far the signature's ``created`` may be from the server clock (either way), in seconds.
MAX_CLOCK_SKEW_S = 300
_COVERED = ('"@method"', '"@request-target"', '"content-digest"')
_SIG_PARAMS = re.compile(r'^\((?P<covered>[^)]*)\)(?P<params>(;[a-z]+=("[^"]*"|[0-9]+))*)$')
_SFV_BYTES = re.compile(r"^encord-sig=:(?P<b64>[A-Za-z0-9+/=]+):$")


@dataclass
class RegisteredKey:
    """A public key the emulator accepts, and the projects it may access (None: every project)."""

    public_key_hex: str
    name: str
    project_hashes: set[str] | None = None
    private_key_path: Path | None = field(default=None, repr=False)

    def allows(self, project_hash: str) -> bool:
        return self.project_hashes is None or project_hash in self.project_hashes


class KeyRegistry:
    """Thread-safe set of registered keys; new key pairs are written as OpenSSH files into key_dir."""

    def __init__(self, key_dir: Path) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, RegisteredKey] = {}
        self._key_dir = key_dir
        self._count = 0

    def create(
        self, project_hashes: Iterable[str] | None = None, *, name: str = "key"
    ) -> tuple[str, Path, RegisteredKey]:
        """Generate and register a key pair; returns (private key text, its file, the record)."""
        private = Ed25519PrivateKey.generate()
        text = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode("ascii")
        with self._lock:
            self._count += 1
            path = self._key_dir / f"{name}-{self._count}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
        record = self.register_public_key(
            public_key_hex(private.public_key()), project_hashes, name=name
        )
        record.private_key_path = path
        return text, path, record

    def register_public_key(
        self, hex_key: str, project_hashes: Iterable[str] | None = None, *, name: str = "key"
    ) -> RegisteredKey:
        try:
            raw = bytes.fromhex(hex_key)
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise ValueError("public key must be 64 hex characters (raw Ed25519)") from None
        record = RegisteredKey(
            public_key_hex=hex_key.lower(),
            name=name,
            project_hashes=None if project_hashes is None else set(project_hashes),
        )
        with self._lock:
            self._keys[record.public_key_hex] = record
        return record

    def revoke(self, hex_key: str) -> None:
        with self._lock:
            self._keys.pop(hex_key.lower(), None)

    def get(self, hex_key: str) -> RegisteredKey | None:
        with self._lock:
            return self._keys.get(hex_key.lower())

    def all(self) -> list[RegisteredKey]:
        with self._lock:
            return list(self._keys.values())


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _unauthenticated(reason: str) -> ApiError:
    return ApiError(401, f"Request refused: {reason}.")


def _lookup(registry: KeyRegistry, hex_key: str) -> tuple[RegisteredKey, Ed25519PublicKey]:
    record = registry.get(hex_key)
    if record is None:
        raise _unauthenticated("the signing key is not registered with this Encord platform")
    return record, Ed25519PublicKey.from_public_bytes(bytes.fromhex(record.public_key_hex))


def verify_rest(
    registry: KeyRegistry,
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> RegisteredKey:
    """Verify a signed /v2 request; ``target`` is the raw request target (path?query) as received."""
    digest_header = headers.get("Content-Digest")
    sig_input = headers.get("Signature-Input")
    sig_header = headers.get("Signature")
    if not digest_header or not sig_input or not sig_header:
        if headers.get("Authorization", "").startswith("Bearer "):
            raise _unauthenticated(
                "bearer tokens are not accepted by the emulator; sign with a key"
            )
        raise _unauthenticated(
            "the request is not signed (Content-Digest/Signature headers missing)"
        )

    expected_digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    if digest_header != expected_digest:
        raise _unauthenticated("Content-Digest does not match the request body")

    if not sig_input.startswith("encord-sig="):
        raise _unauthenticated("Signature-Input has no encord-sig label")
    params_text = sig_input[len("encord-sig=") :]
    match = _SIG_PARAMS.match(params_text)
    if match is None:
        raise _unauthenticated("Signature-Input is malformed")
    if tuple(match["covered"].split()) != _COVERED:
        raise _unauthenticated(
            "the signature must cover @method, @request-target and content-digest"
        )
    params: dict[str, str] = {}
    for part in match["params"].split(";")[1:]:
        key, _, value = part.partition("=")
        params[key] = value.strip('"')
    if params.get("alg") != "ed25519":
        raise _unauthenticated("the signature algorithm must be ed25519")
    try:
        created = int(params["created"])
        hex_key = params["keyid"]
        bytes.fromhex(hex_key)
    except (KeyError, ValueError):
        raise _unauthenticated("Signature-Input needs created and a hex keyid") from None
    if len(hex_key) != 64:
        raise _unauthenticated("keyid must be a 64-hex-character Ed25519 public key")

    record, public_key = _lookup(registry, hex_key)
    now = time.time() if now is None else now
    if abs(now - created) > MAX_CLOCK_SKEW_S:
        raise _unauthenticated(
            f"the signature was created {int(now - created)} s from the server time "
            f"(more than {MAX_CLOCK_SKEW_S} s): check the client clock"
        )

    sig_match = _SFV_BYTES.match(sig_header)
    if sig_match is None:
        raise _unauthenticated("Signature header is malformed")
    try:
        signature = base64.b64decode(sig_match["b64"], validate=True)
    except binascii.Error:
        raise _unauthenticated("Signature header is not base64") from None

    signed_text = "\n".join(
        [
            f'"@method": {method.upper()}',
            f'"@request-target": {target}',
            f'"content-digest": {digest_header}',
            f'"@signature-params": {params_text}',
        ]
    )
    try:
        public_key.verify(signature, signed_text.encode())
    except InvalidSignature:
        raise _unauthenticated("the signature does not verify") from None
    return record


def verify_rpc(registry: KeyRegistry, *, headers: Mapping[str, str], body: bytes) -> RegisteredKey:
    """Verify the ``Authorization: <pubkey hex>:<signature hex>`` header of a POST /public call."""
    authorization = headers.get("Authorization", "")
    if not authorization:
        raise _unauthenticated("the request has no Authorization header")
    if authorization.startswith("Bearer "):
        raise _unauthenticated("bearer tokens are not accepted by the emulator; sign with a key")
    hex_key, sep, hex_sig = authorization.partition(":")
    if not sep or len(hex_key) != 64:
        raise _unauthenticated("the Authorization header must be <public key hex>:<signature hex>")
    try:
        signature = bytes.fromhex(hex_sig)
        bytes.fromhex(hex_key)
    except ValueError:
        raise _unauthenticated("the Authorization header is not hex") from None
    record, public_key = _lookup(registry, hex_key)
    try:
        public_key.verify(signature, hashlib.sha256(body).digest())
    except InvalidSignature:
        raise _unauthenticated("the signature does not verify against the request body") from None
    return record
