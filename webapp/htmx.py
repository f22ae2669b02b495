"""The one module that reads or writes htmx's ``HX-*`` headers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_fragment(request: Request) -> bool:
    """An htmx swap, not a boosted navigation or a history restore (those need the page)."""
    return (
        is_htmx(request)
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def current_url(request: Request) -> str | None:
    """The address of the page htmx is on (not the fragment's URL), if htmx said it."""
    return request.headers.get("HX-Current-URL") if is_htmx(request) else None


def see_other(request: Request, url: str) -> Response:
    """After a successful POST: 303 for a browser, a full-page redirect for htmx."""
    if is_htmx(request):
        return redirect(Response(status_code=204), url)
    return RedirectResponse(url, status_code=303)


def redirect(response: Response, url: str) -> Response:
    """Tell htmx to load ``url`` as a full page (a 303 would be followed inside the swap)."""
    response.headers["HX-Redirect"] = url
    return response


def push_url(response: Response, url: str) -> Response:
    """The address htmx puts in the bar instead of the one it asked for (its raw form)."""
    response.headers["HX-Push-Url"] = url
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
