"""The conformance kit: the contract's test suite, runnable against any worker.

``swayhost conformance -- <worker command>`` (or ``run(spec)`` from Python)
starts the worker through the ordinary host machinery and checks what a
worker in any language must do: refuse to run without the cookie, hand
over a private socket, answer health and Describe truthfully, serve every
advertised operation on every advertised view with sane numbers, answer the
same request with the same bytes, refuse bad input and unadvertised
capabilities with the contract's status codes, and exit on Shutdown and on
its host's death. ``checks`` holds the checks, ``runner`` runs them and
``report`` prints the outcome.
"""

from swayhost.conformance.result import CheckResult, Report
from swayhost.conformance.runner import run

__all__ = ["CheckResult", "Report", "run"]
