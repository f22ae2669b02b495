"""Password hashing: bcrypt in a small pool of low-priority threads, never on the event loop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from webapp.middleware import BodySizeLimitMiddleware
from webapp.security import HASH_NICENESS, PasswordHasher


def _bcrypt_threads() -> dict[str, int]:
    """This process's hashing threads, by name, with their niceness as the kernel has it."""
    found = {}
    for thread in threading.enumerate():
        if thread.name.startswith("bcrypt") and thread.native_id is not None:
            # Field 19 of stat is the niceness; count from the closing parenthesis of the
            # command name (field 2), which may hold spaces.
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            found[thread.name] = int(stat.rsplit(")", 1)[1].split()[16])
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
async def test_hashing_threads_run_at_a_lower_priority() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=2)
    try:
        hashed = await hasher.hash("correct horse battery")
        assert await hasher.verify("correct horse battery", hashed)
        threads = _bcrypt_threads()
        assert threads and all(nice == HASH_NICENESS for nice in threads.values()), threads
        assert threading.current_thread().name not in threads  # not on the loop's thread
    finally:
        hasher.close()
    assert not _bcrypt_threads()  # closed with the app


async def test_hashes_are_bcrypt_at_the_configured_cost() -> None:
    hasher = PasswordHasher(rounds=5, concurrency=1)
    try:
        hashed = await hasher.hash("correct horse battery")
    finally:
        hasher.close()
    assert hashed.startswith("$2b$05$")
    assert CryptContext(schemes=["bcrypt"]).verify("correct horse battery", hashed)
    with pytest.raises(ValueError, match="72 bytes"):
        await PasswordHasher(rounds=4, concurrency=1).hash("é" * 37)


async def test_a_content_length_of_other_digits_is_no_error() -> None:
    """A Content-Length header of digits from another script ("²" is a digit to Python's
    str.isdigit, and int() refuses it) is not a declared size: the body is still counted as
    it is read, and the app answers, rather than the middleware failing."""
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x=1", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    declared = [(b"content-length", "²".encode("latin-1"))]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": declared}
    await BodySizeLimitMiddleware(app, max_bytes=10)(scope, receive, send)
    assert seen == [b"x=1"] and sent[0]["status"] == 204
