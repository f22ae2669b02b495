"""Site-relative addresses that are safe to send a browser to."""

from __future__ import annotations

from urllib.parse import urlsplit


def local_path(value: object, default: str) -> str:
    """``value`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not isinstance(value, str) or not value.startswith("/") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    if any(ord(ch) < 0x20 for ch in value):  # no header splitting through a Location
        return default
    return value
