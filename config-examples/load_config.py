"""Load a dictConfig from YAML or JSON, then log from four processes.

    python config-examples/load_config.py config-examples/logging.yaml
    python config-examples/load_config.py config-examples/logging.json

The files are plain ``dictConfig`` schemas; JSON needs nothing beyond the standard library, YAML
needs PyYAML. ``filename`` in them is relative to the working directory.

Trap avoided: the file keeps ``disable_existing_loggers: false``. Loggers created before
``dictConfig`` runs (module-level ``logging.getLogger(__name__)`` in every library you import)
would otherwise be disabled and drop their records without a word.
"""

from __future__ import annotations

import json
import logging
import logging.config
import multiprocessing
import os
import sys
from typing import Any


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(f)  # type: ignore[no-any-return]
        return json.load(f)  # type: ignore[no-any-return]


def work(path: str, worker: int, count: int) -> None:
    logging.config.dictConfig(load(path))
    log = logging.getLogger("example")
    for i in range(count):
        log.info("record id=w%d-%06d", worker, i)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: load_config.py CONFIG.yaml|CONFIG.json", file=sys.stderr)
        return 2
    count = int(os.environ.get("RECORDS", "10000"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=work, args=(argv[0], n, count)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return max(p.exitcode or 0 for p in procs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
