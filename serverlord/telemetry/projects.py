"""Per-project check metrics for Prometheus, in Healthchecks' format.

``/projects/<project uuid>/metrics/<read-only API key>``, or the same URL
without the key and an ``Authorization: Bearer <key>`` header. Only a
read-only key of that very project opens it: a read-write key, a revoked one
or one of another project gets 403. Checks are named by their name, tags and
``unique_key`` (derived from the id, as Healthchecks does), never by their
uuid, which is what pings them.

These are not OpenTelemetry metrics: they are the checks as the store has them
at the time of the scrape, one series per check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from serverlord.accounts import unique_key
from serverlord.checks import DOWN, GRACE, PAUSED, Check, status_at


@dataclass(slots=True, frozen=True)
class KeyGrant:
    """What an API key opens."""

    project: str
    read_only: bool


KeyLookup = Callable[[str], Awaitable[KeyGrant | None]]
"""The grant of a whole API key, or None when no key in use matches it."""
ProjectChecks = Callable[[str], Awaitable[Sequence[Check]]]
"""The checks of a project."""


def may_read(grant: KeyGrant | None, project: str) -> bool:
    return grant is not None and grant.read_only and grant.project == project


def render_checks(checks: Sequence[Check], now: float) -> str:
    rows = []
    for check in sorted(checks, key=lambda c: c.id):
        labels = (
            f'{{name="{_escape(check.name)}", tags="{_escape(check.tags)}", '
            f'unique_key="{unique_key(check.id)}"}}'
        )
        rows.append((check, labels, status_at(check, now, with_started=False)))
    return "".join(_lines(rows))


def _lines(rows: list[tuple[Check, str, str]]) -> Iterator[str]:
    gauges = (
        ("up", "Whether the check is currently up (1 for yes, 0 for no).",
         lambda check, status: status != DOWN),
        ("down", "Whether the check is currently down (1 for yes, 0 for no).",
         lambda check, status: status == DOWN),
        ("started", "Whether the check is currently started (1 for yes, 0 for no).",
         lambda check, status: check.last_start is not None),
        ("grace", "Whether the check is currently in the grace period "
         "(1 for yes, 0 for no).",
         lambda check, status: status == GRACE),
        ("paused", "Whether the check is currently paused (1 for yes, 0 for no).",
         lambda check, status: status == PAUSED),
    )  # fmt: skip
    for name, help_text, holds in gauges:
        yield f"# HELP hc_check_{name} {help_text}\n"
        yield f"# TYPE hc_check_{name} gauge\n"
        for check, labels, status in rows:
            yield f"hc_check_{name}{labels} {int(holds(check, status))}\n"
        yield "\n"

    yield (
        "# HELP hc_check_last_duration_seconds How long the last run took, "
        "from its start ping to its end.\n"
    )
    yield "# TYPE hc_check_last_duration_seconds gauge\n"
    for check, labels, _ in rows:
        if check.last_duration is not None:
            yield f"hc_check_last_duration_seconds{labels} {check.last_duration!r}\n"
    yield "\n"

    tags: dict[str, bool] = {}
    for check, _, status in rows:
        for tag in check.tag_list():
            tags[tag] = tags.get(tag, True) and status != DOWN
    yield (
        "# HELP hc_tag_up Whether all checks with this tag are up "
        "(1 for yes, 0 for no).\n"
    )
    yield "# TYPE hc_tag_up gauge\n"
    for tag in sorted(tags):
        yield f'hc_tag_up{{tag="{_escape(tag)}"}} {int(tags[tag])}\n'
    yield "\n"

    down = sum(1 for _, _, status in rows if status == DOWN)
    yield "# HELP hc_checks_total The total number of checks.\n"
    yield "# TYPE hc_checks_total gauge\n"
    yield f"hc_checks_total {len(rows)}\n"
    yield "\n"
    yield "# HELP hc_checks_down_total The number of checks currently down.\n"
    yield "# TYPE hc_checks_down_total gauge\n"
    yield f"hc_checks_down_total {down}\n"


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
