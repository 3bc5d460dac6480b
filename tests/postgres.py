"""A real PostgreSQL for the tests: one cluster per session, a database per test.

Use it as a plugin (``pytest_plugins = ("tests.postgres",)``): the fixture
``postgres_url`` gives each test a fresh database copied from a migrated
template, on a cluster started once per session with initdb and pg_ctl on a
free port of 127.0.0.1. initdb refuses to run as root, so as root the cluster
runs as the ``postgres`` user. Without PostgreSQL's binaries the tests fail:
a skip would pass CI without ever testing the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from serverlord.store.postgres import migrate

TEMPLATE = "serverlord_template"
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
"""Where Debian's postgresql package puts each version's binaries, off PATH."""
START_TIMEOUT = 60

# The cluster is thrown away after the session: durability on power loss is
# not what these tests can observe, and skipping fsync keeps them fast.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PostgresMissingError(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def find_binaries() -> Path:
    """The folder of initdb and pg_ctl: PATH first, then Debian's layout."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(os.path.realpath(found)).parent
    debian = sorted(
        DEBIAN_BINARIES.glob("*/bin/initdb"),
        key=lambda path: (
            int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0
        ),
    )
    if debian:
        return debian[-1].parent
    raise PostgresMissingError(
        "PostgreSQL is not installed: no initdb on PATH nor in "
        "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """A PostgreSQL cluster in a temporary folder, owned by this test session."""

    def __init__(self, root: Path, binaries: Path, as_user: str | None) -> None:
        self.root = root
        self.binaries = binaries
        self.as_user = as_user
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._template_ready = False

    @classmethod
    def start(cls) -> Cluster:
        binaries = find_binaries()
        as_user = None
        root = Path(tempfile.mkdtemp(prefix="serverlord-pg-"))
        if os.geteuid() == 0:
            as_user = "postgres"
            try:
                owner = pwd.getpwnam(as_user)
            except KeyError:
                shutil.rmtree(root)
                raise PostgresMissingError(
                    "tests run as root but there is no postgres user to run "
                    "PostgreSQL as (Debian's postgresql package creates it)"
                ) from None
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = cls(root, binaries, as_user)
        try:
            cluster._init()
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A fresh database with the current schema; return its name."""
        name = f"test_{next(self._names)}"
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            if not self._template_ready:
                await self._make_template(admin)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await admin.close()
        return name

    async def create_empty_database(self) -> str:
        """A fresh database without any table; return its name."""
        name = f"empty_{next(self._names)}"
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await admin.close()
        return name

    async def add_password_role(self, password: str) -> str:
        """A superuser that must give ``password`` to log in over TCP; its name.

        The cluster trusts everyone else: a line for the role goes first in
        pg_hba.conf, and the server reads the file again.
        """
        role = f"lord_{next(self._names)}"
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            create = await admin.fetchval(
                "SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', "
                "$1::text, $2::text)",
                role,
                password,
            )
            await admin.execute(create)
            hba = self.data / "pg_hba.conf"
            line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
            hba.write_text(line + hba.read_text())
            await admin.execute("SELECT pg_reload_conf()")
        finally:
            await admin.close()
        await self._until_password_is_asked(role)
        return role

    async def _until_password_is_asked(self, role: str) -> None:
        # The server reloads its configuration on a signal, a moment later.
        url = f"postgresql://{role}:wrong@127.0.0.1:{self.port}/postgres"
        for _ in range(200):
            try:
                conn = await asyncpg.connect(url)
            except asyncpg.InvalidPasswordError:
                return
            await conn.close()
            await asyncio.sleep(0.01)
        raise RuntimeError("PostgreSQL did not read pg_hba.conf again")

    async def drop_database(self, name: str) -> None:
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def allow_connections(self, name: str, allowed: bool) -> None:
        """Open or close a database to new connections (existing ones stay)."""
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            flag = "true" if allowed else "false"
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {flag}')
        finally:
            await admin.close()

    def halt(self, mode: str = "fast") -> None:
        """Shut the server down, keeping its data and port for ``resume``."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start a halted server again on the same port."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    async def _make_template(self, admin: asyncpg.Connection) -> None:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        conn = await asyncpg.connect(self.url(TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        self._template_ready = True

    def _init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        self.sockets.mkdir()
        if self.as_user is not None:
            owner = pwd.getpwnam(self.as_user)
            os.chown(self.sockets, owner.pw_uid, owner.pw_gid)

    def _start(self) -> None:
        for _ in range(3):
            self.port = free_port()
            settings = {
                **SETTINGS,
                "port": str(self.port),
                "unix_socket_directories": f"'{self.sockets}'",
            }
            # postgresql.auto.conf wins over postgresql.conf and is rewritten
            # whole on each try.
            auto_conf = self.data / "postgresql.auto.conf"
            auto_conf.write_text(
                "".join(f"{key} = {value}\n" for key, value in settings.items())
            )
            started = self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
                check=False,
            )
            if started.returncode == 0:
                return
        raise RuntimeError(
            f"PostgreSQL did not start: {started.stdout}{started.stderr}"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text().splitlines()[-20:])
        return ""

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / program), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=START_TIMEOUT + 30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
        return done


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    try:
        cluster = Cluster.start()
    except (PostgresMissingError, RuntimeError) as exc:
        pytest.fail(f"cannot start PostgreSQL for the tests: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster: Cluster) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database, dropped after the test."""
    name = await postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    await postgres_cluster.drop_database(name)
