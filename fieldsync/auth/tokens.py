"""Credentials: token generation and checks, password hashing."""
import base64
import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# ODK Central's token shape: 48 random bytes, base64 with '/'->'!' and '+'->'$' (64 characters).
TOKEN = re.compile(r"^[A-Za-z0-9!$]{64}$")

_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown keeps the timing of both answers alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def new_token() -> str:
    raw = base64.b64encode(secrets.token_bytes(48)).decode("ascii")
    return raw.replace("/", "!").replace("+", "$")


def is_well_formed(token: str) -> bool:
    return bool(TOKEN.match(token or ""))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
