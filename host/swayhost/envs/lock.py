"""One inter-process lock per env, so concurrent builders of one env take turns.

Held while an env is checked, built or deleted: the first process builds,
the others wait and then find it complete (a cache hit). It is a
``flock`` on a file beside the envs, which the kernel releases when the
last descriptor of it closes, so a builder that dies (even by SIGKILL) never
leaves it held for ever. The descriptor is handed to the installer processes
a build starts: were the host killed mid-build, its installer would go on
writing into the env folder, and it keeps the env locked until it ends, so
the next builder cannot start over in a folder still being written.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

POLL_SECONDS = 0.1


class EnvLock:
    """The lock of one env; ``fd`` is the descriptor to pass to child processes."""

    def __init__(self, root: Path, digest: str) -> None:
        folder = root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{digest}.lock"
        self.fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (0: try once); ``TimeoutError`` when still held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TimeoutError(f"{self.path} is held by another process") from None
                time.sleep(POLL_SECONDS)
            else:
                self.fd = fd
                return

    def release(self) -> None:
        """Close our descriptor; the lock ends once no child holds a copy either."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> EnvLock:
        self.acquire(timeout=0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
