"""Status badges of a project: for all its checks or those of one tag.

A badge URL carries the project id and a signature of the tag made with the
project's secret badge key, so that it cannot be guessed, nor a badge of one
tag be turned into another's. Each comes as SVG, as JSON and as shields.io
endpoint JSON; the ``-2`` forms show two states (a late check counts as up),
the others three (up, late, down).
"""

from __future__ import annotations

import hmac
from html import escape
from typing import Any
from urllib.parse import quote

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from serverlord import clock
from serverlord.accounts import Project, badge_signature
from serverlord.checks import DOWN, GRACE, status_at
from serverlord.http.api_schema import BadgeUrls

FORMATS = ("svg", "json", "shields")
ALL = "*"
ALL_LABEL = "serverlord"
COLORS = {"up": "#4c1", "late": "#fe7d37", "down": "#e05d44"}
SHIELDS_COLORS = {"up": "success", "late": "important", "down": "critical"}
NO_CACHE = "no-cache, no-store, must-revalidate, max-age=0"


def badge_urls(base_url: str, project: Project, tag: str) -> BadgeUrls:
    sig = badge_signature(project, tag)
    prefix = f"{base_url}/badge/{project.id}/{sig}"
    path = "" if tag == ALL else "/" + quote(tag, safe="")
    urls = {}
    for fmt in FORMATS:
        urls[fmt] = f"{prefix}-2{path}.{fmt}"
        urls[f"{fmt}3"] = f"{prefix}{path}.{fmt}"
    return BadgeUrls(**urls)


def badge_state(statuses: list[str], with_late: bool) -> tuple[str, int, int]:
    """The badge's state, and how many checks are late and down."""
    down = statuses.count(DOWN)
    late = statuses.count(GRACE)
    if down:
        return "down", late, down
    if late and with_late:
        return "late", late, down
    return "up", late, down


def svg(label: str, state: str) -> str:
    label_width = 10 + 7 * len(label)
    state_width = 10 + 7 * len(state)
    width = label_width + state_width
    label, color = escape(label), COLORS[state]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" '
        f'role="img" aria-label="{label}: {state}">'
        f'<rect width="{label_width}" height="20" fill="#555"/>'
        f'<rect x="{label_width}" width="{state_width}" height="20" '
        f'fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,sans-serif" font-size="11">'
        f'<text x="{label_width / 2}" y="14">{label}</text>'
        f'<text x="{label_width + state_width / 2}" y="14">{state}</text>'
        "</g></svg>"
    )


class BadgeService:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def answer(
        self, project_id: str, signature: str, tag: str, fmt: str
    ) -> Response[Any]:
        project = await self.store.get_project(project_id)
        with_late = not signature.endswith("-2")
        signature = signature.removesuffix("-2")
        if (
            project is None
            or fmt not in FORMATS
            or not hmac.compare_digest(signature, badge_signature(project, tag))
        ):
            return Response("not found", status_code=404, media_type="text/plain")

        now = clock.now()
        statuses = [
            status_at(check, now, with_started=False)
            for check in await self.store.project_checks(project.id)
            if tag == ALL or tag in check.tag_list()
        ]
        state, late, down = badge_state(statuses, with_late)
        label = ALL_LABEL if tag == ALL else tag
        headers = {"Cache-Control": NO_CACHE}
        if fmt == "json":
            body = {
                "status": state,
                "total": len(statuses),
                "grace": late,
                "down": down,
            }
            return Response(body, headers=headers)
        if fmt == "shields":
            shields = {
                "schemaVersion": 1,
                "label": label,
                "message": state,
                "color": SHIELDS_COLORS[state],
            }
            return Response(shields, headers=headers)
        return Response(svg(label, state), media_type="image/svg+xml", headers=headers)


def badge_routes(service: BadgeService) -> list[HTTPRouteHandler]:
    @get("/badge/{project_id:str}/{tail:str}", include_in_schema=False)
    async def all_checks(
        project_id: FromPath[str], tail: FromPath[str]
    ) -> Response[Any]:
        signature, _, fmt = tail.rpartition(".")
        return await service.answer(project_id, signature, ALL, fmt)

    @get("/badge/{project_id:str}/{signature:str}/{tail:path}", include_in_schema=False)
    async def one_tag(
        project_id: FromPath[str], signature: FromPath[str], tail: FromPath[str]
    ) -> Response[Any]:
        tag, _, fmt = tail.lstrip("/").rpartition(".")
        return await service.answer(project_id, signature, tag, fmt)

    return [all_checks, one_tag]
