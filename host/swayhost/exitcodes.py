"""The ``swayhost`` command's exit codes, shared by ``cli`` and every ``commands`` module."""

EXIT_OK = 0
"""Success."""
EXIT_FAILED = 1
"""A check failed (conformance, env verify, ...)."""
EXIT_USAGE = 2
"""A usage error: bad arguments, nothing to do."""
EXIT_WORKER = 3
"""A worker could not be started or crashed (any ``SwayHostError``)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it); a sweep run again resumes."""
