"""uvicorn with several workers serving the plain ASGI example, configured by --log-config.

The workers are spawned, not forked: each applies the log config itself and opens its own
handlers, and ``flock`` makes them share each file.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from integration_harness import (
    APP_RE,
    BACKUPS,
    BIN,
    EXAMPLES,
    MAX_BYTES,
    SERVER_RE,
    UVICORN_ACCESS_RE,
    Server,
    assert_backups_within_limit,
    assert_exact,
    audit_log,
    drive,
    free_port,
    new_ids,
    records,
    server_env,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

pytest.importorskip("uvicorn")
yaml = pytest.importorskip("yaml")

WORKERS = 2
REQUESTS = 1500

# Extra handler options per run. The non-blocking (queue) mode belongs here once it exists:
# ("flock", {"nonblocking": True}) keeps the event loop free of file I/O.
VARIANTS: list[tuple[str, dict[str, Any]]] = [("flock", {}), ("flock", {"nonblocking": True, "flush_interval": "50 ms"})]


def log_config(tmp_path: Path, strategy: str, options: dict[str, Any]) -> Path:
    """The example's YAML file with test-sized rotation, still YAML (the documented form)."""
    config = yaml.safe_load((EXAMPLES / "uvicorn_log_config.yaml").read_text())
    for handler in config["handlers"].values():
        handler.update(strategy=strategy, max_bytes=MAX_BYTES, backup_count=BACKUPS, **options)
    path = tmp_path / "uvicorn_log_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("strategy", "options"), VARIANTS)
def test_uvicorn_workers_share_rotating_logs(tmp_path: Path, strategy: str, options: dict[str, Any]) -> None:
    """Concurrent requests to 2 uvicorn workers: each id once in app.log and access.log."""
    port = free_port()
    argv = [
        str(BIN / "uvicorn"), "uvicorn_app:app",
        "--app-dir", str(EXAMPLES),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(WORKERS),
        "--log-config", str(log_config(tmp_path, strategy, options)),
    ]
    # Relative filenames in the config (logs/app.log) resolve against the server's directory.
    server = Server(argv, tmp_path, server_env(tmp_path / "logs", strategy), tmp_path / "uvicorn.out")
    with server:
        ids = wait_ready(server, port)
        batch = new_ids("uvicorn", REQUESTS)
        drive(port, batch)
        ids += batch
        assert server.stop() == 0, server.output()

    logs = tmp_path / "logs"
    assert_exact(audit_log(logs / "app.log", strategy, ids, APP_RE), "app.log")
    assert_exact(audit_log(logs / "access.log", strategy, ids, UVICORN_ACCESS_RE), "access.log")
    for name in ("app.log", "access.log"):
        assert assert_backups_within_limit(logs / name, strategy) >= 1, f"{name} never rotated"

    # Each worker announced its start and its end once, in the shared error.log.
    started: Counter[int] = Counter()
    finished: Counter[int] = Counter()
    for f, text in records(logs / "error.log", strategy):
        m = SERVER_RE.fullmatch(text)
        assert m is not None, f"malformed line in {f}: {text!r}"
        if s := re.fullmatch(r"Started server process \[(\d+)\]", m.group("id")):
            started[int(s.group(1))] += 1
        if s := re.fullmatch(r"Finished server process \[(\d+)\]", m.group("id")):
            finished[int(s.group(1))] += 1
    assert len(started) == WORKERS and set(started.values()) == {1}, started
    assert finished == started

    # Both workers served requests, so both wrote the same files at the same time.
    served = Counter(int(m.group("pid")) for _, t in records(logs / "app.log", strategy) if (m := APP_RE.fullmatch(t)))
    assert set(served) == set(started), (served, started)
