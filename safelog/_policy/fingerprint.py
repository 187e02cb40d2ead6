"""The fingerprint of a rotation policy: what every process writing one log must agree on.

Processes that write one log with different rotation settings (two deployments, or an old and
a new release during a rolling restart) rotate it by different rules. The fingerprint makes
that visible: a digest of every field of :class:`~.config.RotationConfig` plus the identity of
the namer and rotator, and the same settings in words. It is built from the sub-config's fields
generically, so an option added to the rotation sub-config joins it without an edit here; a
value of a type that has no canonical form below is spelled by ``repr()``, which
``tests/test_policy_agreement.py`` checks is stable across processes for every field.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from .._primitives.codec import Codec
from .config import RotationConfig
from .timing import TimePolicy

__all__ = ["Fingerprint", "fingerprint_of", "describe"]


def _hook_name(hook: object) -> str | None:
    """A namer or rotator as a qualified name: the same function in two processes has the same
    one, while its ``repr()`` carries an address."""
    if hook is None:
        return None
    func = getattr(hook, "__func__", hook)
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}" if module else str(name)


def _time_key(t: TimePolicy) -> dict[str, Any]:
    at = None if t.at_time is None else t.at_time.isoformat()
    return {"when": t.when, "interval": t.interval, "utc": t.utc, "atTime": at, "aligned": t.aligned}


# Canonical forms of the sub-config's values that are not plain JSON.
_CANONICAL: dict[type, Callable[[Any], Any]] = {
    Codec: lambda c: c.name,
    TimePolicy: _time_key,
    datetime.time: lambda t: t.isoformat(),
}


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    for kind, spell in _CANONICAL.items():
        if isinstance(value, kind):
            return spell(value)
    return repr(value)


# Fields whose option has another name (the rest are named as their option).
_OPTION = {"codec": "compress", "max_age": "retention", "timing": "time"}


def describe(config: RotationConfig, hooks: tuple[object, object] = (None, None)) -> dict[str, Any]:
    """Every field of ``config`` and the namer/rotator identity, as plain JSON values."""
    settings = {_OPTION.get(f.name, f.name): _canonical(getattr(config, f.name)) for f in dataclasses.fields(config)}
    settings["namer"], settings["rotator"] = (_hook_name(h) for h in hooks)
    return settings


class Fingerprint(NamedTuple):
    """A policy's digest and its settings in words."""

    digest: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Fingerprint:
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return cls(hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), settings)

    def summary(self) -> str:
        """The settings that are not at their default, as the user would write them."""
        defaults = describe(RotationConfig())
        words = [f"{k}={v!r}" for k, v in sorted(self.settings.items()) if defaults.get(k, v) != v or k not in defaults]
        return ", ".join(words) or "no rotation"

    def differences(self, other: Fingerprint) -> tuple[str, str]:
        """The settings in which the two differ: (ours, theirs), each in words."""
        keys = sorted(set(self.settings) | set(other.settings))
        differ = [k for k in keys if self.settings.get(k) != other.settings.get(k)]
        mine = ", ".join(f"{k}={self.settings.get(k)!r}" for k in differ)
        theirs = ", ".join(f"{k}={other.settings.get(k)!r}" for k in differ)
        return mine, theirs


def fingerprint_of(config: RotationConfig, hooks: tuple[object, object] = (None, None)) -> Fingerprint:
    return Fingerprint.of(describe(config, hooks))
