"""The one module that reads or writes htmx's ``HX-*`` headers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_fragment(request: Request) -> bool:
    """An htmx swap, not a boosted navigation or a history restore (those need the page)."""
    return (
        is_htmx(request)
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def redirect(response: Response, url: str) -> Response:
    """Tell htmx to load ``url`` as a full page (a 303 would be followed inside the swap)."""
    response.headers["HX-Redirect"] = url
    return response


def retarget(response: Response, target: str, swap: str = "outerHTML") -> Response:
    """Swap this answer into ``target`` instead of the element that asked for it."""
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = swap
    return response


def vary(response: Response) -> Response:
    # One URL answers with a page or a fragment; caches must keep them apart.
    response.headers["Vary"] = "HX-Request"
    return response
