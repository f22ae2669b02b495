"""Password hashing with bcrypt, off the event loop and under a limiter of its own."""

from __future__ import annotations

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

    async def hash(self, password: str) -> str:
        check_length(password)
        return await to_thread.run_sync(self.context.hash, password, limiter=self._limiter)

    async def verify(self, password: str, password_hash: str) -> bool:
        if len(password.encode()) > BCRYPT_MAX_BYTES:
            return False
        return await to_thread.run_sync(
            self.context.verify, password, password_hash, limiter=self._limiter
        )


def check_length(password: str) -> None:
    # bcrypt looks at 72 bytes only; refusing beats silently ignoring the rest.
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password is longer than {BCRYPT_MAX_BYTES} bytes")
