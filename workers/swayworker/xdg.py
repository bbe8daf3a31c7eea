"""The project's folders under the XDG base directories, for host and workers alike.

One rule: ``$XDG_<KIND>_HOME/sway-plugin-host`` when the variable is set,
else the XDG default under the home folder. The host's cache and state
folders (``swayhost.paths``) and the MLX worker's adapter cache use it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = "sway-plugin-host"
_DEFAULTS = {
    "XDG_CACHE_HOME": (".cache",),
    "XDG_STATE_HOME": (".local", "state"),
}


def project_dir(variable: str) -> Path:
    """``$variable/sway-plugin-host``, or the XDG default when it is unset or empty.

    ``variable`` is ``XDG_CACHE_HOME`` (rebuildable) or ``XDG_STATE_HOME``
    (what cannot be rebuilt).
    """
    root = os.environ.get(variable) or str(Path.home().joinpath(*_DEFAULTS[variable]))
    return Path(root).expanduser() / PROJECT
