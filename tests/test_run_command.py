"""``serverlord run``: the job wrapper, run as a real process against a live
server (or against a port where nothing listens)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from serverlord.checks import DOWN, UP
from serverlord.http.api_edit import new_check
from tests.conftest import Live
from tests.receivers import closed_port
from tests.tenants import make_tenant

pytestmark = pytest.mark.slow


@dataclass
class Finished:
    code: int
    out: bytes
    err: str
    took: float


async def run(url: str, *command: str, retries: int = 3) -> Finished:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERLORD_")}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "serverlord", "run", "--url", url,
        "--retries", str(retries), "--timeout", "5", "--", *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    took = time.monotonic() - started
    return Finished(proc.returncode, out, err.decode("utf-8", "replace"), took)


async def a_check(live: Live) -> str:
    check = new_check("00000000-0000-0000-0000-000000000000")
    await live.store.add_check(check)
    return check.id


async def test_a_command_that_succeeds_reports_its_start_and_success(
    live: Live,
) -> None:
    check_id = await a_check(live)

    done = await run(
        f"{live.base_url}/ping/{check_id}", sys.executable, "-c", "print('hello')"
    )

    assert done.code == 0, done.err
    assert done.out == b"hello\n"
    end, start = await live.store.recent_pings(check_id, 10)
    assert (start.kind, end.kind, end.exit_status) == ("start", "success", 0)
    assert start.rid is not None and start.rid == end.rid
    assert end.body == b"hello\n"
    assert end.duration is not None and end.duration >= 0
    stored = await live.store.get_check(check_id)
    assert stored is not None and stored.status == UP


async def test_a_command_that_fails_with_3_reports_it_and_exits_3(live: Live) -> None:
    check_id = await a_check(live)

    done = await run(
        f"{live.base_url}/ping/{check_id}", "sh", "-c", "echo broke >&2; exit 3"
    )

    assert done.code == 3
    assert "broke" in done.err
    end, _ = await live.store.recent_pings(check_id, 10)
    assert (end.kind, end.exit_status, end.body) == ("fail", 3, b"broke\n")
    stored = await live.store.get_check(check_id)
    assert stored is not None and stored.status == DOWN


async def test_a_megabyte_of_non_utf8_output_passes_through_and_its_tail_is_sent(
    live: Live,
) -> None:
    check_id = await a_check(live)
    script = (
        "import sys; w = sys.stdout.buffer.write; "
        "w(b'\\xff\\xfe' + b'x' * 1_000_000); w(b'\\xc3\\x28 end')"
    )

    done = await run(f"{live.base_url}/ping/{check_id}", sys.executable, "-c", script)

    assert done.code == 0, done.err
    assert len(done.out) == 2 + 1_000_000 + 6
    assert done.out.endswith(b"\xc3\x28 end")
    end, _ = await live.store.recent_pings(check_id, 10)
    assert len(end.body) == live.settings.ping_body_limit
    assert end.body.endswith(b"x\xc3\x28 end")


async def test_with_the_server_down_the_command_still_runs_and_its_status_returns(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    url = f"http://127.0.0.1:{closed_port()}/ping/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    script = f"import time; open({str(marker)!r}, 'w').write(str(time.time())); exit(7)"

    launched = time.time()
    done = await run(url, sys.executable, "-c", script, retries=3)

    assert done.code == 7
    assert marker.exists()
    # The job started at once, not after the start ping's retries.
    assert float(marker.read_text()) - launched < done.took - 1.0
    assert "could not send the start ping after 3 tries" in done.err
    assert "could not send the 7 ping after 3 tries" in done.err


async def test_a_command_that_does_not_exist_is_127_and_a_failure(live: Live) -> None:
    check_id = await a_check(live)

    done = await run(f"{live.base_url}/ping/{check_id}", "/no/such/command")

    assert done.code == 127
    end, _ = await live.store.recent_pings(check_id, 10)
    assert (end.kind, end.exit_status) == ("fail", 127)
    assert b"command not found" in end.body


async def test_a_script_without_an_interpreter_line_is_126_and_a_failure(
    live: Live, tmp_path: Path
) -> None:
    check_id = await a_check(live)
    script = tmp_path / "job"
    script.write_text("echo hi\nexit 4\n")
    script.chmod(0o755)

    done = await run(f"{live.base_url}/ping/{check_id}", str(script))

    assert done.code == 126
    end, _ = await live.store.recent_pings(check_id, 10)
    assert (end.kind, end.exit_status) == ("fail", 126)
    assert b"cannot run" in end.body


async def test_a_slug_url_with_create_makes_the_check(live: Live) -> None:
    tenant = await make_tenant(live.store)

    done = await run(
        f"{live.base_url}/ping/{tenant.project.ping_key}/nightly?create=1", "true"
    )

    assert done.code == 0, done.err
    [check] = await live.store.project_checks(tenant.project.id)
    assert (check.slug, check.n_pings, check.status) == ("nightly", 2, UP)


async def test_run_needs_a_command_and_an_http_url() -> None:
    no_command = await run("http://127.0.0.1:9/ping/x")
    bad_url = await run("ftp://example/ping/x", "true")

    assert no_command.code == 2
    assert "give the command to run after --" in no_command.err
    assert bad_url.code == 2
    assert "is not an http(s) ping URL" in bad_url.err
