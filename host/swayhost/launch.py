"""``launch``: a launcher's workers, supervised, behind the proxy sway sees.

Every way of getting a backend ends here (``build`` and ``spawn``,
``attach``, ``reattach``, a Ray pool): only the launcher differs. This
module sits below all of them and above the supervisor and the proxy.
"""

from __future__ import annotations

import logging

from swayhost.endpoint import Launcher
from swayhost.proxy import RemoteBackend, make_proxy
from swayhost.spec import ModelSpec
from swayhost.supervisor import Supervisor

log = logging.getLogger("swayhost")


def launch(spec: ModelSpec, launcher: Launcher) -> RemoteBackend:
    """Supervise the workers ``launcher`` starts or finds, Load ``spec``, return the proxy."""
    supervisor = Supervisor(spec, launcher)
    try:  # a failed start closes the launcher too: a worker template must not outlive it
        description = supervisor.start()
        backend = make_proxy(supervisor, spec)
    except BaseException:
        supervisor.close()
        raise
    log.info(
        "worker %s ready: kind=%s pid=%d protocols=%s",
        supervisor.name,
        description.worker_kind,
        backend.pid,
        list(description.capabilities.protocols),
    )
    return backend
