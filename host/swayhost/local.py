"""The local launcher: each worker a child process of this host, as the spec says to run it."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from swayhost.errors import WorkerStartError
from swayhost.process import WorkerProcess
from swayhost.spec import ModelSpec, WorkerOptions
from swayhost.template import WorkerTemplate, template_module

log = logging.getLogger("swayhost")


@dataclass(frozen=True)
class LocalLauncher:
    """Workers started as child processes on private Unix sockets (the default)."""

    spec: ModelSpec

    def endpoint(self) -> WorkerProcess:
        return worker_process(self.spec)


class ForkingLauncher:
    """Local workers forked from a pre-imported template (``RecoveryPolicy.fork_template``).

    The template starts with the first worker and lives until ``close``; a
    template that has died is started again. A command that is not a
    built-in ``python -m swayworker.KIND`` is spawned as ``LocalLauncher``
    would.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._template: WorkerTemplate | None = None
        self._unavailable = False
        """A template failed to start once: spawn directly from then on."""
        self._lock = threading.Lock()
        """The standby thread and a restart may both ask for a worker at once."""

    def endpoint(self) -> WorkerProcess:
        process = worker_process(self.spec)
        module = template_module(process.argv)
        if module is None or self._unavailable:
            return process
        with self._lock:
            return self._forked(process, module)

    def _forked(self, process: WorkerProcess, module: str) -> WorkerProcess:
        if self._template is None or not self._template.alive():
            env = process.environment(detached=False)
            try:
                self._template = WorkerTemplate(
                    process.argv[0], module, env, process.name, process.startup_timeout
                )
            except WorkerStartError as exc:
                log.info("%s; spawning workers directly", exc)
                self._unavailable = True
                return process
        process.spawner = self._template.spawn
        return process

    def close(self) -> None:
        with self._lock:
            if self._template is not None:
                self._template.close()
                self._template = None


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
