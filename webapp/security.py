"""Password hashing with bcrypt, off the event loop and under a limiter of its own."""

from __future__ import annotations

import secrets

from anyio import CapacityLimiter, to_thread
from passlib.context import CryptContext

BCRYPT_MAX_BYTES = 72


class PasswordHasher:
    """Hashes and verifies passwords in worker threads.

    bcrypt releases the GIL, so hashing in a thread keeps the loop free; the limiter caps
    how many hashes run at once, so a burst of creates cannot take every worker thread
    (or every core) from the pages that only read.
    """

    def __init__(self, rounds: int, concurrency: int) -> None:
        self.context = CryptContext(
            schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=rounds, bcrypt__ident="2b"
        )
        self._limiter = CapacityLimiter(concurrency)
        # A well-formed hash that matches nothing: verifying against it costs what a real
        # verification costs, so an unknown email answers as slowly as a known one.
        self.dummy_hash = f"$2b${rounds:02d}${_noise(22)}{_noise(31)}"

    async def hash(self, password: str) -> str:
        check_length(password)
        return await to_thread.run_sync(self.context.hash, password, limiter=self._limiter)

    async def verify(self, password: str, password_hash: str) -> bool:
        if len(password.encode()) > BCRYPT_MAX_BYTES:
            return False
        return await to_thread.run_sync(
            self.context.verify, password, password_hash, limiter=self._limiter
        )

    def needs_update(self, password_hash: str) -> bool:
        """True when the hash was made with weaker settings than the current ones."""
        return bool(self.context.needs_update(password_hash))


def _noise(length: int) -> str:
    """Random bcrypt base64, its last character's unused low bits zero as bcrypt expects."""
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length - 1)) + secrets.choice(".Oeu")


def check_length(password: str) -> None:
    # bcrypt looks at 72 bytes only; refusing beats silently ignoring the rest.
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password is longer than {BCRYPT_MAX_BYTES} bytes")
