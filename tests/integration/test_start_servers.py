"""rotate_on_start under real servers: gunicorn with and without --preload (workers restarted by
max_requests) and uvicorn --workers 2, each started twice on one log. Each start rotates the log
exactly once: the backup holds exactly the first start's lines, the log exactly the second's."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
from integration_harness import BIN, Server, drive, free_port, new_ids, wait_ready

from safelog._policy.starts import ENV

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HERE = Path(__file__).parent
LINE = re.compile(r"(?P<pid>\d+) (?:boot (?P<run>\w+)|request id=(?P<id>[\w-]+))")


def env_for(logs: Path, run: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(LOG_DIR=str(logs), RUN=run, PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), str(HERE)]), PYTHONDONTWRITEBYTECODE="1")
    return env


def serve(argv: list[str], logs: Path, run: str, port: int, n: int, out: Path) -> list[str]:
    """Start the server, send ``n`` requests, stop it; the ids its app logged."""
    with Server(argv, HERE, env_for(logs, run), out) as server:
        ids = wait_ready(server, port)
        batch = new_ids(run, n)
        drive(port, batch, threads=4)
        assert server.stop() == 0, server.output()
    return ids + batch


def parse(path: Path) -> tuple[Counter[str], Counter[str], set[int]]:
    """(request ids, boot runs, pids that booted) of one file; every line must match."""
    ids: Counter[str] = Counter()
    boots: Counter[str] = Counter()
    pids = set()
    for line in path.read_text().splitlines():
        m = LINE.fullmatch(line)
        assert m is not None, f"malformed line in {path}: {line!r}"
        if m.group("run"):
            boots[m.group("run")] += 1
            pids.add(int(m.group("pid")))
        else:
            ids[m.group("id")] += 1
    return ids, boots, pids


def check_two_starts(logs: Path, first: list[str], second: list[str], processes: int) -> None:
    """app.log.1 holds exactly the first start, app.log exactly the second; nothing else rotated."""
    assert sorted(os.listdir(logs)) == ["app.log", "app.log.1", "app.log.lock"]
    for name, ids, run in (("app.log.1", first, "run1"), ("app.log", second, "run2")):
        seen, boots, pids = parse(logs / name)
        assert seen == Counter(ids), f"{name}: not exactly the requests of {run}"
        assert set(boots) == {run} and len(pids) >= processes, (name, boots, pids)


def gunicorn(port: int, preload: bool, workers: int = 2, max_requests: int = 0) -> list[str]:
    argv = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers), "--graceful-timeout", "20"]
    if max_requests:
        argv += ["--max-requests", str(max_requests)]
    if preload:
        argv.append("--preload")
    return argv + ["--no-control-socket", "start_apps:wsgi"] if _has_control_socket() else argv + ["start_apps:wsgi"]


def _has_control_socket() -> bool:
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

    return any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS)


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_rotates_once_per_start_with_workers_restarted(tmp_path: Path, preload: bool) -> None:
    """Two gunicorn starts, workers configuring at once (or the master with --preload) and restarted
    by max_requests: the log is rotated once per start and no record of a start is rotated away."""
    pytest.importorskip("gunicorn")
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    first = serve(gunicorn(port, preload, workers=3), logs, "run1", port, 60, tmp_path / "g1.out")
    port = free_port()
    second = serve(gunicorn(port, preload, workers=3, max_requests=10), logs, "run2", port, 200, tmp_path / "g2.out")
    check_two_starts(logs, first, second, 1 if preload else 3)
    if not preload:
        # Workers were really replaced (each boot line is a process that configured the handler).
        _, boots, pids = parse(logs / "app.log")
        assert len(pids) > 3, f"no worker was restarted: {pids}"


def test_uvicorn_workers_rotate_once_per_start(tmp_path: Path) -> None:
    """Two starts of uvicorn --workers 2 (spawned workers configuring the handler each): one rotation per start."""
    pytest.importorskip("uvicorn")
    logs = tmp_path / "logs"
    logs.mkdir()
    runs = []
    for run in ("run1", "run2"):
        port = free_port()
        argv = [str(BIN / "uvicorn"), "start_apps:asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        runs.append(serve(argv, logs, run, port, 100, tmp_path / f"{run}.out"))
    check_two_starts(logs, runs[0], runs[1], 2)
