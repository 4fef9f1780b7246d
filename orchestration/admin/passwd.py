"""Mosquitto 2.x password file entries, hashed the way `mosquitto_passwd` does.

Format `user:$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 over the password with a
12-byte random salt, salt and 64-byte digest in standard base64 (mosquitto 2.0
src/password_mosq.c, hash type 7). Hashing here means the admin tool needs no Mosquitto
installed; the tests check the real broker accepts the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 1000  # mosquitto_passwd 2.0.11 uses 101; the broker reads the count per entry
SALT_BYTES = 12


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def verify_password(password: str, hashed: str) -> bool:
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(base64.b64encode(digest).decode(), parts[4])


def new_password() -> str:
    """A random password with 192 bits of entropy, safe in TOML and on a command line."""
    return secrets.token_urlsafe(24)


def render(entries: dict[str, str]) -> str:
    """The password file text from {username: hashed}, sorted for stable diffs."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(entries.items()))
