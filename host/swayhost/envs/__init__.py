"""Provisioned worker environments: declared by a spec, built once, cached by hash.

``ensure(spec) -> Path`` is the one call a worker launcher needs: it returns
the interpreter of the env ``spec`` declares, building it on first use (uv,
or venv + pip) under ``<cache dir>/envs/<hash>/`` and reusing it afterwards
(a cache hit installs nothing). Concurrent callers take turns on a file
lock; an interrupted build never leaves an env that looks usable. See
``spec`` (what an env is, its hash), ``ensure`` (building), ``cache`` (the
folder layout), ``gc`` (removing unused envs).
"""

from swayhost.envs.cache import CachedEnv, cached_envs, envs_root
from swayhost.envs.ensure import Provisioned, ResolvedEnv, ensure, provision, resolve
from swayhost.envs.gc import Collected, collect
from swayhost.envs.spec import EnvSpec

__all__ = [
    "CachedEnv",
    "Collected",
    "EnvSpec",
    "Provisioned",
    "ResolvedEnv",
    "cached_envs",
    "collect",
    "ensure",
    "envs_root",
    "provision",
    "resolve",
]
