"""Password hashing with the standard library: scrypt, a random salt per user, and a
constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# scrypt cost: n=2**14, r=8 uses 16 MiB and about 50 ms per hash on one core.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`. Costs one hash even when `stored` is missing,
    so that response time does not reveal which user names exist."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = (stored or "").split("$")
        ok_format = scheme == "scrypt"
        n, r, p, salt, expected = int(n), int(r), int(p), bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        ok_format, n, r, p, salt, expected = False, _N, _R, _P, b"\0" * 16, b"\0" * _DKLEN
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=len(expected))
    return hmac.compare_digest(digest, expected) and ok_format
