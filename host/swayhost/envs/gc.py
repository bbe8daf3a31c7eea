"""Removing cached envs that are no longer used.

An env goes when it has not been used for longer than ``older_than``
seconds, when ``keep`` is given and it is not among those hashes (the envs
the config still declares), when it is an unfinished build, or always with
``everything``. Each removal holds the env's lock, taken without waiting: an
env being built or checked right now is skipped, never pulled away from
under its builder.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from swayhost.envs.cache import CachedEnv, cached_envs, envs_root
from swayhost.envs.lock import EnvLock


@dataclass(frozen=True)
class Collected:
    """One env that gc picked, why, and whether it is gone."""

    env: CachedEnv
    why: str
    size: int
    removed: bool
    """False on a dry run, or when the env was busy."""


def collect(
    *,
    older_than: float | None,
    keep: Collection[str] | None = None,
    everything: bool = False,
    dry_run: bool = False,
) -> list[Collected]:
    """Pick (and unless ``dry_run`` remove) the envs the rules above select."""
    now = time.time()
    picked: list[Collected] = []
    for env in cached_envs():
        why = _why(env, now, older_than, keep, everything)
        if why is None:
            continue
        size = env.size()
        removed = False
        if not dry_run:
            lock = EnvLock(envs_root(), env.digest)
            try:
                lock.acquire(timeout=0)
            except TimeoutError:
                why += " (busy: skipped)"
            else:
                try:
                    env.remove()
                    removed = True
                finally:
                    lock.release()
        picked.append(Collected(env, why, size, removed))
    return picked


def _why(
    env: CachedEnv,
    now: float,
    older_than: float | None,
    keep: Collection[str] | None,
    everything: bool,
) -> str | None:
    if everything:
        return "--all"
    if not env.complete():
        return "unfinished build"
    if keep is not None and env.digest not in keep:
        return "not declared in the config"
    idle = now - env.last_used()
    if older_than is not None and idle > older_than:
        return f"unused for {idle / 86400:.1f} days"
    return None
