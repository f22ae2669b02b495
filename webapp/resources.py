"""Where the templates, static files and migrations are, in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``<checkout>/<name>`` when running from source, else the copy packed into the wheel."""
    in_checkout = PACKAGE_DIR.parent / name
    if in_checkout.is_dir():
        return in_checkout
    return PACKAGE_DIR / f"_{name}"
