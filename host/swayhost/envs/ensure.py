"""``ensure(spec)``: the interpreter of a provisioned env, built once, then reused.

The steps, each bounded in time and each failure an ``EnvError`` that names
the env and the fix, raised before any worker starts:

1. resolve: find the base interpreter, compute the identity and its hash;
2. lock the env (another process building it means waiting, then a hit);
3. a complete env is a cache hit: touch its last-use file, return;
4. otherwise delete any unfinished folder, create the venv, add the
   ``.pth`` files (the worker source; the host's site-packages for
   ``inherit``), install requirements + the worker package's dependencies in
   one installer call, check that the worker package imports, and write the
   completion marker last. Any failure or interruption deletes the folder.
"""

from __future__ import annotations

import json
import platform
import site
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swayhost.console import step
from swayhost.envs import installers, pythons
from swayhost.envs.cache import CachedEnv, envs_root, log_path
from swayhost.envs.diagnose import diagnose
from swayhost.envs.lock import EnvLock
from swayhost.envs.project import WorkerPackage, worker_package
from swayhost.envs.runner import StepResult, StepTimeout, run_step
from swayhost.envs.spec import EnvSpec, digest, identity
from swayhost.errors import EnvError
from swayhost.paths import writable

LAYER_PTH = "_swayhost_inherit.pth"
SOURCE_PTH = "_swayhost_worker_source.pth"

_CHECK = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "import grpc_health.v1.health, swayplugin.v1.backend_pb2, swayworker.server\n"
    "versions = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        versions[name] = metadata.version(name)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        pass\n"
    "print(json.dumps(versions))\n"
)
"""Imports what every worker needs, then prints the versions of the named distributions."""


@dataclass(frozen=True)
class ResolvedEnv:
    """A spec with its base interpreter and cache key worked out (nothing built yet)."""

    spec: EnvSpec
    base: pythons.Interpreter
    inherited: tuple[str, ...]
    package: WorkerPackage
    identity: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class Provisioned:
    """The outcome of ``provision``: where the env is and whether this call built it."""

    env: CachedEnv
    built: bool
    seconds: float

    @property
    def python(self) -> Path:
        return self.env.python


def ensure(spec: EnvSpec) -> Path:
    """The interpreter (``.../venv/bin/python``) of the env ``spec`` declares, built if needed."""
    return provision(spec).python


def provision(spec: EnvSpec) -> Provisioned:
    """``ensure``, also saying whether the env was built and how long it took."""
    started = time.monotonic()
    resolved = resolve(spec)
    folder = writable(envs_root())
    env = CachedEnv(folder / resolved.digest)
    lock = EnvLock(folder, resolved.digest)
    try:
        lock.acquire(timeout=spec.timeout)
    except TimeoutError:
        raise _error(
            spec,
            resolved.digest,
            "busy",
            f"another process has held its lock for over {spec.timeout:g}s ({lock.path})",
            "wait for that build to finish, or stop it and retry",
        ) from None
    try:
        built = not env.complete()
        if built:  # minutes, the first time: say so, as pip and uv do
            log = log_path(folder, resolved.digest)
            with step(f"building {label(spec, resolved.digest)} (once; log: {log})"):
                _Build(resolved, env, folder, lock, deadline=started + spec.timeout).run()
        env.touch()
    finally:
        lock.release()
    return Provisioned(env, built, time.monotonic() - started)


def resolve(spec: EnvSpec) -> ResolvedEnv:
    """The base interpreter, the inherited folders and the hash of ``spec``."""
    try:
        base = pythons.find(spec.python)
    except pythons.InterpreterError as exc:
        is_path = spec.python is not None and "/" in spec.python
        fix = (
            "point `python` at a Python interpreter or a virtualenv folder"
            if is_path
            else f"install that Python, give its path, or drop `python` to use the host's "
            f"Python {platform.python_version()}"
        )
        raise _error(spec, None, "interpreter" if is_path else "python", str(exc), fix) from None
    inherited = host_site_packages() if spec.inherit else ()
    if spec.inherit and base.minor != _host_minor():
        raise _error(
            spec,
            None,
            "python",
            f"inherit: true layers on the host's Python {_host_minor()} site-packages, "
            f"but python is {base.version}",
            "drop `python` (or inherit) so both sides run the same Python",
        )
    try:
        package = worker_package(spec.extras)
    except ValueError as exc:
        raise _error(spec, None, "spec", str(exc), "fix `extras`") from None
    ident = identity(
        spec,
        python_path=base.path,
        python_version=base.version,
        inherited=inherited,
        worker_package=package.identity(),
    )
    return ResolvedEnv(spec, base, inherited, package, ident, digest(ident))


def host_site_packages() -> tuple[str, ...]:
    """The host interpreter's site-packages folders (and the user site when enabled)."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return tuple(f for f in dict.fromkeys(folders) if Path(f).is_dir())


def label(spec: EnvSpec, env_digest: str | None) -> str:
    """How messages name an env: name, hash and where it was declared."""
    key = f" [{env_digest}]" if env_digest else ""
    where = f" ({spec.origin})" if spec.origin else ""
    return f"environment {spec.name!r}{key}{where}"


class _Build:
    """One build of one env, under its lock: the steps share a deadline, a log and the lock."""

    def __init__(
        self, resolved: ResolvedEnv, env: CachedEnv, root: Path, lock: EnvLock, deadline: float
    ) -> None:
        self.resolved = resolved
        self.spec = resolved.spec
        self.env = env
        self.lock = lock
        self.deadline = deadline
        self.log = log_path(root, resolved.digest)

    def run(self) -> None:
        """Build the env in place; on any failure or interruption, delete it."""
        try:
            installer = installers.choose(self.spec)
        except installers.InstallerMissing as exc:
            raise self.error("installer", exc.problem, exc.fix) from None
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.unlink(missing_ok=True)
        self.env.remove()  # an unfinished build left by an interrupted process
        self.env.path.mkdir(parents=True)
        started = time.monotonic()
        try:
            self.install(installer.venv_command(self.resolved.base.executable, self.env.venv))
            self.write_paths()
            packages = [*self.spec.requirements, *self.resolved.package.requirements]
            self.install(installer.install_command(self.spec, self.env.python, packages, self.log))
            versions = self.check()
            self.env.mark_complete(
                {
                    "digest": self.resolved.digest,
                    "name": self.spec.name,
                    "origin": self.spec.origin,
                    "spec": asdict(self.spec),
                    "identity": self.resolved.identity,
                    "installer": installer.name,
                    "created": time.time(),
                    "build_seconds": round(time.monotonic() - started, 3),
                    "versions": versions,
                }
            )
        except BaseException:
            self.env.remove()
            raise

    def write_paths(self) -> None:
        """The ``.pth`` files: the worker source folder, and the host's site-packages to inherit.

        ``site.addsitedir`` (not a bare path line) so the host's own ``.pth``
        files (editable installs) are processed too. Both come after the env's
        site-packages on ``sys.path``, so what the env installs shadows them.
        """
        found = sorted(self.env.venv.glob("lib/python3*/site-packages"))
        if not found:
            raise FileNotFoundError(f"{self.env.venv} has no lib/python3*/site-packages")
        source = self.resolved.package.source
        if source is not None:
            (found[0] / SOURCE_PTH).write_text(f"{source}\n", encoding="utf-8")
        if self.resolved.inherited:
            lines = [f"import site; site.addsitedir({f!r})" for f in self.resolved.inherited]
            (found[0] / LAYER_PTH).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def step(self, argv: list[str], env: Mapping[str, str] | None = None) -> StepResult:
        """Run one step within what is left of the deadline, logging its output.

        The step inherits the lock's descriptor (see ``lock``), so it holds
        the env locked even if this process dies while it runs; ``env`` adds
        variables to its environment.
        """
        assert self.lock.fd is not None
        try:
            result = run_step(
                argv,
                timeout=self.deadline - time.monotonic(),
                cwd=self.log.parent,
                pass_fds=(self.lock.fd,),
                env=env,
            )
        except StepTimeout as exc:
            self.append(argv, exc.output)
            raise self.error(
                "timeout",
                f"the build ran past its {self.spec.timeout:g}s limit and was stopped "
                f"(in `{' '.join(argv[:4])} ...`)",
                f"raise `timeout`, or check the network and the index options; log: {self.log}",
            ) from None
        self.append(argv, result.output)
        return result

    def install(self, argv: list[str]) -> None:
        """An installer step, with the spec's ``install_env``; a failure is diagnosed."""
        result = self.step(argv, self.spec.install_env)
        if result.returncode == 0:
            return
        found = diagnose(result.output, self.log.read_text(encoding="utf-8", errors="replace"))
        if found.reason == "network":
            problem = f"the package index cannot be reached: {found.detail}"
            fix = (
                "check the network and index_url / extra_index_urls / find_links "
                "(a local wheel folder in find_links installs offline)"
            )
        elif found.reason == "unresolvable":
            problem = f"a requirement cannot be resolved: {found.detail}"
            fix = "fix or relax `requirements` (`pip index versions NAME` lists what an index has)"
        else:
            command = " ".join(argv[:4])
            problem = f"`{command} ...` failed (exit {result.returncode}): {found.detail}"
            fix = "read the installer's log"
        raise self.error(found.reason, problem, f"{fix}; log: {self.log}")

    def check(self) -> dict[str, str]:
        """The worker package imports in the new env; the versions of what the spec named."""
        names = [*self.spec.requirement_names(), "sway-plugin-host"]
        result = self.step([str(self.env.python), "-c", _CHECK, *names])
        if result.returncode != 0:
            last = (result.output.strip().splitlines() or ["no output"])[-1]
            raise self.error(
                "install",
                f"the worker package does not import in the new env ({last[:300]})",
                "a requirement may pin a grpcio, protobuf or numpy the worker cannot use; "
                f"relax it; log: {self.log}",
            )
        versions: dict[str, str] = json.loads(result.output.strip().splitlines()[-1])
        return versions

    def append(self, argv: list[str], output: str) -> None:
        with self.log.open("a", encoding="utf-8") as handle:
            handle.write(f"$ {' '.join(argv)}\n{output}\n")

    def error(self, reason: str, problem: str, fix: str) -> EnvError:
        return _error(self.spec, self.resolved.digest, reason, problem, fix)


def _host_minor() -> str:
    return ".".join(platform.python_version().split(".")[:2])


def _error(spec: EnvSpec, env_digest: str | None, reason: str, problem: str, fix: str) -> EnvError:
    return EnvError(f"{label(spec, env_digest)}: {problem}; {fix}", reason=reason)
