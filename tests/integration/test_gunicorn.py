"""gunicorn serving the Flask and Django examples with config-examples/gunicorn.conf.py.

Every run rotates the logs while requests are in flight, stops the server gracefully and then
audits exactly: each request id once in app.log and once in access.log, no torn line, every
worker's boot and exit lines present once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from integration_harness import (
    APP_RE,
    BIN,
    EXAMPLES,
    GUNICORN_ACCESS_RE,
    REPO,
    SERVER_RE,
    Load,
    Server,
    asctime,
    assert_backups_within_limit,
    assert_exact,
    audit_log,
    drive,
    free_port,
    merge_log,
    new_ids,
    records,
    server_env,
    wait_for,
    wait_ready,
)

from safelog._sinks.logfile import CHECK_INTERVAL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

pytest.importorskip("gunicorn")

APPS = {
    "flask": (EXAMPLES, "flask_app:app"),
    "django": (EXAMPLES / "django_project", "mysite.wsgi"),
}
REQUESTS = 1500


def start_gunicorn(
    tmp_path: Path,
    app: str,
    strategy: str,
    *,
    worker_class: str = "sync",
    workers: int = 4,
    preload: bool = False,
) -> tuple[Server, int, Path]:
    cwd, module = APPS[app]
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        "-c", str(EXAMPLES / "gunicorn.conf.py"),
        "-b", f"127.0.0.1:{port}",
        "-w", str(workers),
        "-k", worker_class,
        "--graceful-timeout", "20",
    ]
    if worker_class == "gthread":
        argv += ["--threads", "4"]
    if preload:
        argv.append("--preload")
    if _has_setting("control_socket_disable"):
        # gunicorn >= 25.1 opens a control socket in ~/.gunicorn by default; parallel test
        # servers must not share it.
        argv.append("--no-control-socket")
    argv.append(module)
    logs = tmp_path / "logs"
    extra = {}
    if app == "django":
        # The example's settings with TIME_ZONE = "UTC": see django_utc_settings.py.
        extra = dict(
            DJANGO_SETTINGS_MODULE="django_utc_settings",
            PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent)]),
        )
    server = Server(argv, cwd, server_env(logs, strategy, **extra), tmp_path / "gunicorn.out")
    return server, port, logs


def _has_setting(name: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

    return any(s.name == name for s in KNOWN_SETTINGS)


def worker_lines(
    logs: Path, strategy: str, *, live: bool = False
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """pid -> the files holding its "Booting worker" / "Worker exiting" lines in error.log.

    ``live``: the server is running (per-process shards are read as they are, not merged).
    """
    booted: dict[int, list[str]] = defaultdict(list)
    exited: dict[int, list[str]] = defaultdict(list)
    for f, text in records(logs / "error.log", strategy, live=live):
        m = SERVER_RE.fullmatch(text)
        assert m is not None, f"malformed line in {f}: {text!r}"
        msg, pid = m.group("id"), int(m.group("pid"))
        if msg == f"Booting worker with pid: {pid}":
            booted[pid].append(f)
        elif msg == f"Worker exiting (pid: {pid})":
            exited[pid].append(f)
    return booted, exited


def wait_for_workers(server: Server, logs: Path, strategy: str, n: int) -> None:
    """Until every worker has booted: the load then meets all of them from the first request."""
    wait_for(lambda: len(worker_lines(logs, strategy, live=True)[0]) >= n, f"{n} workers to boot", server)


LOGS = ("app.log", "access.log", "error.log")


def check_logs(logs: Path, strategy: str, ids: list[str]) -> dict[int, list[str]]:
    """The exact audits every run ends with; returns pid -> files of its boot line.

    A per-process log is audited as merged (see ``files_to_audit``): one file, in time order.
    """
    assert_exact(audit_log(logs / "app.log", strategy, ids, APP_RE), "app.log")
    assert_exact(audit_log(logs / "access.log", strategy, ids, GUNICORN_ACCESS_RE), "access.log")
    # A whole-line check of the server log too (the pattern accepts any message).
    error = audit_log(logs / "error.log", strategy, [], SERVER_RE)
    assert not error.malformed, error.malformed[:5]
    booted, exited = worker_lines(logs, strategy)
    assert booted, "no worker boot lines in error.log"
    assert {p: len(v) for p, v in booted.items()} == {p: 1 for p in booted}
    # Every worker wrote its exit line once at the graceful stop, through the handler it
    # inherited from the master (or reopened after the app's own dictConfig closed it).
    assert {p: len(v) for p, v in exited.items()} == {p: 1 for p in booted}
    for name in ("app.log", "access.log"):
        assert assert_backups_within_limit(logs / name, strategy) >= 1, f"{name} never rotated"
    return booted


def served_by(logs: Path, strategy: str, ids: set[str]) -> set[int]:
    pids = set()
    for _, text in records(logs / "app.log", strategy):
        m = APP_RE.fullmatch(text)
        if m and m.group("id") in ids:
            pids.add(int(m.group("pid")))
    return pids


MATRIX = [
    # app, strategy, worker class, preload, how per-process shards are merged after the stop
    # (Django with --preload, sync, flock: the HUP test)
    ("flask", "flock", "sync", False, None),
    ("flask", "flock", "sync", True, None),
    ("django", "flock", "sync", False, None),
    ("flask", "flock", "gthread", False, None),
    ("django", "flock", "gthread", True, None),
    ("flask", "per-process", "sync", True, "cli"),
    ("django", "per-process", "sync", False, "api"),
    ("django", "per-process", "gthread", True, "api"),
]


@pytest.mark.parametrize(("app", "strategy", "worker_class", "preload", "merge"), MATRIX)
def test_gunicorn_concurrent_requests(
    tmp_path: Path, app: str, strategy: str, worker_class: str, preload: bool, merge: str | None
) -> None:
    """Concurrent requests to several workers: each id once in app.log and access.log, untorn."""
    workers = 4 if worker_class == "sync" else 2
    server, port, logs = start_gunicorn(
        tmp_path, app, strategy, worker_class=worker_class, workers=workers, preload=preload
    )
    with server:
        ids = wait_ready(server, port)
        wait_for_workers(server, logs, strategy, workers)
        batch = new_ids(f"{app}-{worker_class}", REQUESTS)
        drive(port, batch)
        ids += batch
        assert server.stop() == 0, server.output()
    if merge == "cli":
        # `python -m safelog merge`, as an operator would run it; the audits below then read
        # what it wrote (check_logs merges with safelog.merge() when nothing did yet).
        for name in LOGS:
            merge_log(logs / name, cli=True)
    booted = check_logs(logs, strategy, ids)
    assert len(booted) == workers
    # The requests really were spread over several processes writing at the same time.
    assert len(served_by(logs, strategy, set(batch))) >= 2


@pytest.mark.parametrize(("app", "preload"), [("flask", False), ("django", True)])
def test_gunicorn_hup_replaces_workers_without_loss(tmp_path: Path, app: str, preload: bool) -> None:
    """kill -HUP under load: old workers finish, new ones take over, no record lost or doubled."""
    # With --preload the master re-applies logconfig_dict on HUP, closing the handlers Django's
    # LOGGING opened in it; the new workers are forked from that master.
    server, port, logs = start_gunicorn(tmp_path, app, "flock", preload=preload)
    with server:
        ids = wait_ready(server, port)
        wait_for_workers(server, logs, "flock", 4)
        phases = [new_ids("hup-a", 500), new_ids("hup-b", 500), new_ids("hup-c", 500)]
        load = Load(port, phases)
        try:
            load.run_phase(0)
            first, _ = worker_lines(logs, "flock", live=True)
            # HUP while the second phase is in flight.
            load.release[1].set()
            load.wait_completed(len(phases[0]) + 100)
            server.signal(signal.SIGHUP)
            load.wait_phase(1)

            def replaced() -> bool:
                booted, exited = worker_lines(logs, "flock", live=True)
                return len(set(booted) - set(first)) == 4 and set(first) <= set(exited)

            # The last phase starts only once every old worker is gone: it is served by the
            # new generation alone.
            wait_for(replaced, "the new workers to boot and the old ones to exit", server)
            load.run_phase(2)
        finally:
            load.join()
        for phase in phases:
            ids += phase
        assert server.stop() == 0, server.output()
    booted = check_logs(logs, "flock", ids)
    new = set(booted) - set(first)
    assert len(first) == 4 and len(new) == 4
    assert served_by(logs, "flock", set(phases[2])) <= new


def test_gunicorn_usr1_after_external_rename(tmp_path: Path) -> None:
    """logrotate-style rename + kill -USR1 under load: nothing lost, writers leave the old files."""
    server, port, logs = start_gunicorn(tmp_path, "flask", "flock")
    with server:
        ids = wait_ready(server, port)
        wait_for_workers(server, logs, "flock", 4)
        renames: list[float] = []

        def load_until_path_checks_due(tag: str) -> None:
            # Keep requests coming until every writer's once-a-second path check is due since
            # the last rename: their next records then go to the path again.
            n = 0
            while time.time() <= renames[-1] + CHECK_INTERVAL:
                extra = new_ids(f"usr1-{tag}{n}", 50)
                drive(port, extra)
                ids.extend(extra)
                n += 1

        for round_ in (1, 2):
            if renames:
                load_until_path_checks_due("between")
            batch = new_ids(f"usr1-{round_}", 400)
            load = Load(port, [batch])
            load.release[0].set()
            try:
                load.wait_completed(100)
                # Rename (what logrotate does without copytruncate) while requests are in
                # flight, then signal as its postrotate script would. Like logrotate's
                # missingok, only what exists: error.log is written only on events, so after
                # the first round it may not have been created again yet.
                for name in LOGS:
                    if name != "error.log" or (logs / name).exists():
                        os.rename(logs / name, logs / f"{name}.moved-{round_}")
                renames.append(time.time())
                server.signal(signal.SIGUSR1)
                load.wait_phase(0)
            finally:
                load.join()
            ids += batch
        # Then the final batch: none of it may reach a renamed file.
        load_until_path_checks_due("wait")
        final = new_ids("usr1-final", 400)
        drive(port, final)
        ids += final
        assert server.stop() == 0, server.output()

    booted = check_logs(logs, "flock", ids)
    final_set = set(final)
    for name in LOGS:
        for f, text in records(logs / name, "flock"):
            m = re.search(r"\.moved-(\d)$", f)
            if m is None:
                continue
            # A writer notices the rename at its first record once CHECK_INTERVAL has passed
            # since its previous path check; nothing written later may be in a renamed file.
            t_rename = renames[int(m.group(1)) - 1]
            assert asctime(text) <= t_rename + CHECK_INTERVAL, f"{f}: {text}"
            if name != "error.log":
                rid = (APP_RE.fullmatch(text) or GUNICORN_ACCESS_RE.fullmatch(text)).group("id")  # type: ignore[union-attr]
                assert rid not in final_set, f"{rid} written to renamed {f}"
    # Every worker that was alive at the end wrote its exit line to the current error.log.
    _, exited = worker_lines(logs, "flock")
    for pid in booted:
        assert not any(".moved-" in f for f in exited[pid]), (pid, exited[pid])
