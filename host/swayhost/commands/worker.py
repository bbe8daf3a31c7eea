"""``swayhost worker serve``: run a worker as a long-lived service that hosts attach to.

The worker runs exactly as a spawned one would (the interpreter or env of
its host-config section), but listens on TCP: mutual TLS and a bearer token
are required off loopback, and the token on loopback too. The command
becomes the worker (exec), so a service manager's signals reach it directly;
it loads ``--base``/``--adapter`` before it prints its handshake line, and
serves until SIGTERM, Ctrl-C or a Shutdown call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from swayworker.protocol import listen_address

from swayhost import config
from swayhost.commands.model_flags import add_model_flags, model_spec
from swayhost.exitcodes import EXIT_USAGE
from swayhost.local import worker_process
from swayhost.spec import KINDS
from swayhost.tls import read_token


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker", help="run a worker as a service that hosts attach to (serve)"
    )
    actions = parser.add_subparsers(dest="worker_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve", help="serve a worker over TCP (mutual TLS + bearer token) until stopped"
    )
    serve.add_argument(
        "--listen",
        required=True,
        type=_listen,
        metavar="HOST:PORT",
        help="e.g. 0.0.0.0:7443 (port 1-65535, or 0 for any free port)",
    )
    serve.add_argument("--kind", choices=KINDS, default="hf", help="worker kind (default hf)")
    add_model_flags(serve, "the model to load before serving (HF id or folder)")
    serve.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option,
        metavar="KEY=VALUE",
        help="a worker option (repeatable)",
    )
    serve.add_argument("--tls-cert", type=Path, help="this worker's certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="its private key (PEM, mode 0600)")
    serve.add_argument(
        "--tls-client-ca", type=Path, help="the CA that clients' certificates must chain to"
    )
    serve.add_argument(
        "--token-file", type=Path, required=True, help="file holding the bearer token (mode 0600)"
    )
    serve.add_argument("argv", nargs="*", help="worker command after --, instead of --kind")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from swayworker.remote import environment

    tls: tuple[Path, Path, Path] | None = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key and args.tls_client_ca):
            print("error: mutual TLS needs --tls-cert, --tls-key and --tls-client-ca together")
            return EXIT_USAGE
        tls = (_absolute(args.tls_cert), _absolute(args.tls_key), _absolute(args.tls_client_ca))
    options = config.worker_options(args.kind)
    options = replace(
        options,
        command=tuple(args.argv) if args.argv else options.command,
        options={**options.options, **dict(args.option)},  # the command line wins
    )
    spec = model_spec(args, options)
    env = environment(
        args.listen,
        read_token(args.token_file),
        tls=tls,
        load=spec.to_proto() if args.base else None,
    )
    worker_process(spec).run_in_place(env)


def _absolute(path: Path) -> Path:
    """The worker may run in another folder (``cwd``): give it paths that hold there."""
    return path.expanduser().resolve()


def _listen(text: str) -> str:
    """``--listen``, checked here so a bad port is a usage error, not a silent other port."""
    try:
        listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _option(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option expects KEY=VALUE, got {item!r}")
    return key, value
