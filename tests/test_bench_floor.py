"""The benchmark's floor draws the console's rows, byte for byte, the way the console does.

`make bench` sets the console's rate against a floor rendering "the same 50-row table": if
the floor's markup drifted from the console's (or drew it with more work), the ratio would
mean nothing. Rendered from the template files alone, no database needed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import jinja2

from webapp.listing import RowLinks
from webapp.templating import format_datetime, make_templates

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
CSRF = re.compile(r'(name="csrf_token" value=")[^"]*(")')


def _users() -> list[SimpleNamespace]:
    when = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    return [
        SimpleNamespace(
            id=7, first_name="Ada", last_name="O'Hara <b>", email="ada&co@example.com",
            is_active=True, is_admin=True, created_at=when,
        ),
        SimpleNamespace(
            id=1234567, first_name="Zoë", last_name="Ng", email="zoe@example.org",
            is_active=False, is_admin=False, created_at=when,
        ),
    ]  # fmt: skip


def _tbody(html: str) -> str:
    inner = html[html.index("<tbody") : html.index("</tbody>")]
    inner = inner[inner.index(">") + 1 :]  # the rows, without the tbody's own attributes
    return CSRF.sub(r"\1…\2", inner).strip()


def test_the_floor_draws_the_consoles_rows() -> None:
    users = _users()
    floor_env = jinja2.Environment(loader=jinja2.FileSystemLoader(BENCH_DIR), autoescape=True)
    floor_env.filters["datetime"] = format_datetime
    floor = floor_env.get_template("floor.html").render(items=users, total=None, per_page=50)

    console_env = make_templates(auto_reload=False).env
    rows = console_env.get_template("users/_rows.html").render(
        rows=users, row_links=RowLinks.of("/users", "/users"), csrf_token="x"
    )
    assert _tbody(floor) == CSRF.sub(r"\1…\2", rows).strip()
    # Escaped on both sides, and the floor's hx-vals say what the console's do.
    assert "O&#39;Hara &lt;b&gt;" in rows
    assert str(RowLinks.of("/users", "/users").next_vals) in floor
