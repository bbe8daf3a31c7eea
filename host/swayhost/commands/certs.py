"""``swayhost certs init | issue``: a private CA and certificates for remote workers.

``init DIR`` makes the CA, a server certificate (for ``--host`` names, plus
loopback), client certificates and a bearer token in a new folder; ``issue
DIR NAME`` signs one more certificate with that CA later. Both print which
file goes where.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from swayhost.exitcodes import EXIT_FAILED, EXIT_OK

_DAYS_HELP = "how long leaf certificates stay valid (default {default} days)"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "certs", help="make a private CA and TLS certificates for remote workers"
    )
    actions = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="a new CA, server and client certificates, a token")
    init.add_argument("directory", type=Path, help="a new folder for the files")
    init.add_argument(
        "--host",
        action="append",
        default=[],
        help="a name or address clients dial the worker by (repeatable; loopback is included)",
    )
    init.add_argument("--client", action="append", help="a client certificate to make (repeatable)")
    init.add_argument("--days", type=int, default=None, help=_DAYS_HELP.format(default=397))
    init.add_argument("--ca-days", type=int, default=3650, help="CA validity (default 3650 days)")
    init.set_defaults(func=run_init)

    issue = actions.add_parser("issue", help="sign one more certificate with DIR's CA")
    issue.add_argument("directory", type=Path, help="the folder `certs init` made")
    issue.add_argument("name", help="file name of the new certificate, e.g. alice or gpu-box")
    issue.add_argument("--server", action="store_true", help="a worker's certificate")
    issue.add_argument("--host", action="append", default=[], help="with --server: a name")
    issue.add_argument("--days", type=int, default=None, help=_DAYS_HELP.format(default=397))
    issue.set_defaults(func=run_issue)


def run_init(args: argparse.Namespace) -> int:
    from swayhost import certs  # cryptography: an optional extra

    try:
        written = certs.init(
            args.directory,
            hosts=args.host,
            clients=args.client or ["client"],
            days=args.days or certs.DEFAULT_LEAF_DAYS,
            ca_days=args.ca_days,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}")
        return EXIT_FAILED
    folder = args.directory
    for path in written:
        print(f"wrote {path}")
    print(
        f"\nworker machine: {folder}/server.crt, server.key, ca.crt, token\n"
        f"each client:    {folder}/ca.crt, its NAME.crt and NAME.key, token\n"
        f"keep {folder}/ca.key with whoever issues certificates (`swayhost certs issue`)"
    )
    return EXIT_OK


def run_issue(args: argparse.Namespace) -> int:
    from swayhost import certs  # cryptography: an optional extra

    try:
        issued = certs.issue(
            args.directory,
            args.name,
            server=args.server,
            hosts=args.host,
            days=args.days or certs.DEFAULT_LEAF_DAYS,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}")
        return EXIT_FAILED
    print(f"wrote {issued.cert}\nwrote {issued.key}")
    return EXIT_OK
