"""The local launcher: each worker a child process of this host, as the spec says to run it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from swayhost.process import WorkerProcess
from swayhost.spec import ModelSpec, WorkerOptions


@dataclass(frozen=True)
class LocalLauncher:
    """Workers started as child processes on private Unix sockets (the default)."""

    spec: ModelSpec

    def endpoint(self) -> WorkerProcess:
        return worker_process(self.spec)


def worker_process(spec: ModelSpec, log_path: Path | None = None) -> WorkerProcess:
    """The (not yet started) worker process for ``spec``, as ``spawn`` runs it.

    Public so tools that drive a worker below the proxy (the conformance kit,
    ``swayhost workers``) start it exactly the way every backend is started.
    ``log_path`` starts it detached, logging there.
    """
    options = _with_interpreter(spec.worker)
    return WorkerProcess(
        options.argv(spec.kind),
        name=options.name or spec.kind,
        env=_merged_env(options),
        cwd=options.cwd,
        startup_timeout=options.startup_timeout,
        log_path=log_path,
    )


def _with_interpreter(options: WorkerOptions) -> WorkerOptions:
    """A provisioned ``environment`` becomes its interpreter, built on first use.

    This runs before any process starts: a broken env raises ``EnvError``
    (naming the env and the fix) and no worker is ever started on it.
    """
    if options.environment is None:
        return options
    from swayhost.envs import ensure  # the installers load only when an env is declared

    return replace(options, python=str(ensure(options.environment)))


def _merged_env(options: WorkerOptions) -> dict[str, str] | None:
    if not options.env:
        return None
    return {**os.environ, **options.env}
