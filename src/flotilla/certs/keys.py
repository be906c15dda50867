"""Encryption at rest for private keys (CA keys, client keys) stored by Flotilla.

Magnum stores each CA key PKCS#8-encrypted with a random passphrase that sits right
next to it; that protects nothing once the store leaks. Flotilla instead encrypts the
whole PEM text with one service secret that lives outside the database (a file, see
:func:`load_or_create_secret`), so a database dump alone does not reveal any key.

Format of a token produced by :meth:`SecretBox.encrypt`::

    "v1:" + urlsafe_b64(nonce[12] || AES-256-GCM ciphertext+tag)

The ``v1`` prefix leaves room for a later change of algorithm or key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretBox", "SecretError", "load_or_create_secret"]

_PREFIX = "v1:"
_NONCE_BYTES = 12
_SALT = b"flotilla.certs.keys/v1"
_DEFAULT_CONTEXT = b"flotilla private keys"


class SecretError(Exception):
    """A token cannot be decrypted: malformed, tampered with, or made with another secret.

    Internal on purpose (not a :class:`flotilla.errors.FlotillaError`): it means the
    stored data or the configured secret is wrong, never that the caller sent bad input,
    so it must surface as a server error rather than a 4xx.
    """


class SecretBox:
    """Authenticated symmetric encryption keyed by a configured secret string.

    The AES-256 key is derived with HKDF-SHA256 from ``secret`` (any non-empty string,
    typically the output of :func:`load_or_create_secret`) and ``context``; two boxes
    with different secrets or contexts cannot read each other's tokens.
    """

    def __init__(self, secret: str, *, context: bytes = _DEFAULT_CONTEXT) -> None:
        """Derive the key; raises ``ValueError`` if ``secret`` is empty or blank."""
        if not secret.strip():
            raise ValueError("SecretBox needs a non-empty secret")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=context).derive(
            secret.encode("utf-8")
        )
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> str:
        """Return an ASCII token for ``plaintext``; a fresh random nonce each call."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _PREFIX.encode("ascii"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        """Return the plaintext of ``token``.

        Raises :class:`SecretError` if the token is not in the ``v1`` format, was
        altered, or was made with another secret/context.
        """
        if not token.startswith(_PREFIX):
            raise SecretError("unknown token format")
        try:
            raw = base64.urlsafe_b64decode(token[len(_PREFIX) :].encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise SecretError("token is not valid base64") from exc
        if len(raw) < _NONCE_BYTES + 16:
            raise SecretError("token is too short")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, _PREFIX.encode("ascii"))
        except InvalidTag as exc:
            raise SecretError("token was tampered with or made with another secret") from exc


def load_or_create_secret(path: Path) -> str:
    """Return the secret stored in ``path``, creating it first if the file is missing.

    A new secret is 32 random bytes, urlsafe-base64 encoded, written to a file created
    exclusively with mode 0600 (missing parent directories are created with 0700).
    Surrounding whitespace in an existing file is ignored. Raises :class:`SecretError`
    if an existing file is empty, and ``OSError`` for filesystem problems.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
        # Write a private temporary file, then hard-link it into place: the link is
        # atomic and fails if the name exists, so a concurrent creator never sees a
        # half-written file and both processes end up with the same secret.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secret + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass  # Lost a race with another process: use the file it wrote.
        else:
            return secret
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise SecretError(f"secret file {path} is empty")
    return secret
