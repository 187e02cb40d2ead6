"""What ``safelog doctor`` found, as a value: the findings, the evidence, and the two forms it is
shown in (the screen, and the stable JSON schema)."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "PolicySeen", "Diagnosis", "SCHEMA"]

# The version of the JSON form (docs/operating.md).
SCHEMA = 1
# Lines of a list shown on the screen before "... and N more" (the JSON has them all).
_SHOWN = 6


@dataclass
class Finding:
    """One thing found: ``problem`` (the exit status says so), ``warning`` or ``note``."""

    level: str
    code: str
    message: str
    path: str = ""

    def as_json(self) -> dict[str, str]:
        return {"level": self.level, "code": self.code, "message": self.message, "path": self.path}


@dataclass
class PolicySeen:
    """A policy a process recorded for the log: who, its fingerprint, and the options in words."""

    pid: int
    host: str
    fingerprint: str
    summary: str


@dataclass
class Diagnosis:
    """What :func:`diagnose` found; :meth:`as_json` is the stable schema, :meth:`render` the
    screen."""

    log: str
    strategy: str = "none"
    evidence: list[str] = field(default_factory=list)
    filesystem: dict[str, Any] = field(default_factory=dict)
    locks: list[dict[str, Any]] = field(default_factory=list)
    writers: list[dict[str, Any]] = field(default_factory=list)
    policies: list[PolicySeen] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    disk: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "problem" for f in self.findings)

    def add(self, level: str, code: str, message: str, path: str = "") -> None:
        self.findings.append(Finding(level, code, message, path))

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "log": self.log,
            "ok": self.ok,
            "strategy": {"name": self.strategy, "evidence": self.evidence},
            "filesystem": self.filesystem,
            "locks": self.locks,
            "writers": self.writers,
            "policies": {
                "fingerprints": [vars(p) for p in self.policies],
                "note": _policy_words(self.policies),
            },
            "files": self.files,
            "disk": self.disk,
            "problems": [f.as_json() for f in self.findings if f.level == "problem"],
            "warnings": [f.as_json() for f in self.findings if f.level == "warning"],
            "notes": [f.as_json() for f in self.findings if f.level == "note"],
        }

    def render(self, width: int = 100) -> str:
        """The report in plain words, lines wrapped to ``width`` columns."""
        name = os.path.basename(self.log)
        out = [f"safelog doctor: {self.log}"]
        indent = " " * 13

        def row(label: str, lines: list[str]) -> None:
            shown = lines[:_SHOWN] + ([f"... and {len(lines) - _SHOWN} more"] if len(lines) > _SHOWN else [])
            for i, line in enumerate(shown or ["none"]):
                wrapped = textwrap.wrap(line, max(width - 13, 40), subsequent_indent="  ") or [""]
                out.append(f"{label if i == 0 else '':<13}{wrapped[0]}")
                out.extend(indent + w for w in wrapped[1:])

        row("strategy", [f"{self.strategy}: {'; '.join(self.evidence)}" if self.evidence else self.strategy])
        fs = self.filesystem
        verdict = (
            "flock and O_APPEND are reliable here"
            if fs.get("flock_safe")
            else "flock and O_APPEND are NOT reliable here (network file system)"
        )
        row("file system", [f"{fs.get('type') or 'unknown'} on {fs.get('mount') or '?'}: {verdict}"])
        row(
            "lock holders",
            [
                f"pid {h['pid']} ({_short(h['command'])}"
                f"{', ' + h['state'] if h['state'] not in ('', 'running', 'sleeping') else ''})"
                f" {'waits for' if h['waiting'] else 'holds'} {h['mode']} on {os.path.basename(h['path'])}"
                for h in self.locks
            ],
        )
        row(
            "open by",
            [
                f"pid {w['pid']} ({_short(w['command'])}): "
                + ", ".join(sorted({os.path.basename(p) for p in w['files']}))
                for w in self.writers
            ],
        )
        row("policies", [_policy_words(self.policies)])
        d = self.disk
        parts = [f"{kind} {_size(d[kind])}" for kind in ("log", "backups", "shards", "other") if d.get(kind)]
        row(
            "disk use",
            [f"{', '.join(parts) or 'nothing'}; total {_size(d.get('total', 0))}; {_size(d.get('free', 0))} free"],
        )
        for level, title in (("problem", "problems"), ("warning", "warnings"), ("note", "notes")):
            found = [f for f in self.findings if f.level == level]
            if found:
                row(title, [f"{os.path.basename(f.path) + ': ' if f.path else ''}{f.message}" for f in found])
        verdict = "no problem found" if self.ok else "problems found (exit status 1)"
        out.append(f"{'verdict':<13}{name}: {verdict}")
        return "\n".join(out) + "\n"

    def dumps(self) -> str:
        return json.dumps(self.as_json(), indent=2, sort_keys=True) + "\n"


def _short(command: str, width: int = 60) -> str:
    """A command line cut to ``width`` characters for the screen (the JSON has it whole)."""
    if not command:
        return "?"
    return command if len(command) <= width else command[: width - 3] + "..."


def _policy_words(policies: list[PolicySeen]) -> str:
    if not policies:
        return "no fingerprint recorded"
    kinds = {p.fingerprint for p in policies}
    if len(kinds) == 1:
        return f"one policy in {len(policies)} process(es): {policies[0].summary}"
    return f"{len(kinds)} different policies in {len(policies)} processes"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


# -- the diagnosis ------------------------------------------------------------------------------
