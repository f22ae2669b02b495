"""Password hashing with bcrypt, off the event loop, in low-priority threads of its own."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from passlib.context import CryptContext

BCRYPT_MAX_BYTES = 72
# A bcrypt hash's variant and cost: $2b$12$...
_BCRYPT_COST = re.compile(r"\$(2[abxy])\$(\d\d)\$")
# How much lower than request handling bcrypt runs (Linux niceness is per thread).
HASH_NICENESS = 10

T = TypeVar("T")


def _lower_priority() -> None:
    """Make this hashing thread yield the CPU to the threads that serve pages."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: hashing still works
        pass


class PasswordHasher:
    """Hashes and verifies passwords in a small pool of threads of its own.

    bcrypt releases the GIL, so hashing in a thread keeps the event loop free. The pool's
    size caps how many hashes run at once, and its threads run at a lower priority, so a
    burst of creates or sign-ins slows itself down, not the pages that only read.
    """

    def __init__(self, rounds: int, concurrency: int) -> None:
        self.rounds = rounds
        self.context = CryptContext(
            schemes=["bcrypt"], deprecated="auto", bcrypt__rounds=rounds, bcrypt__ident="2b"
        )
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="bcrypt", initializer=_lower_priority
        )
        # A well-formed hash that matches nothing: verifying against it costs what a real
        # verification costs, so an unknown email answers as slowly as a known one.
        self.dummy_hash = f"$2b${rounds:02d}${_noise(22)}{_noise(31)}"

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def hash(self, password: str) -> str:
        return await self._hash(self.context, password)

    async def _hash(self, context: CryptContext, password: str) -> str:
        check_length(password)
        return str(await self._run(context.hash, password))

    async def verify(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` is the one ``password_hash`` was made from. A password no
        hash can be made from (over 72 bytes, a NUL, a lone surrogate: the forms refuse
        them) matches none, and is not handed to bcrypt, which would raise."""
        if not storable(password):
            return False
        return bool(await self._run(self.context.verify, password, password_hash))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def needs_update(self, password_hash: str) -> bool:
        """True when the hash was made with weaker settings than the current ones: fewer
        rounds, or another variant. A hash with more rounds is kept: passlib would flag it
        too, and lowering WEBAPP_BCRYPT_ROUNDS (for faster sign-ins, say) would then
        weaken every stored hash at its owner's next sign-in."""
        cost = _BCRYPT_COST.match(password_hash)
        # $2y$ is $2b$ under PHP's name; $2a$ and $2x$ are the older, flawed variants.
        if cost is not None and cost.group(1) in ("2b", "2y") and int(cost.group(2)) >= self.rounds:
            return False
        return bool(self.context.needs_update(password_hash))

    async def rehash(self, password: str, password_hash: str) -> str:
        """A new hash of ``password`` for one that ``needs_update``: with the current
        settings, at the old hash's cost if that was higher (an old variant is replaced,
        its strength kept)."""
        cost = _BCRYPT_COST.match(password_hash)
        rounds = max(self.rounds, int(cost.group(2)) if cost else 0)
        context = (
            self.context if rounds == self.rounds else self.context.copy(bcrypt__rounds=rounds)
        )
        return await self._hash(context, password)


def _noise(length: int) -> str:
    """Random bcrypt base64, its last character's unused low bits zero as bcrypt expects."""
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length - 1)) + secrets.choice(".Oeu")


def storable(password: str) -> bool:
    """Whether bcrypt can hash ``password``: UTF-8 (no lone surrogate), at most 72 bytes of
    it, and no NUL."""
    try:
        size = len(password.encode())
    except UnicodeEncodeError:
        return False
    return size <= BCRYPT_MAX_BYTES and "\x00" not in password


def check_length(password: str) -> None:
    # bcrypt looks at 72 bytes only; refusing beats silently ignoring the rest.
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password is longer than {BCRYPT_MAX_BYTES} bytes")
