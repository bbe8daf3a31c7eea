"""A host process: builds a dummy backend (its worker forked from a template),
prints the worker's and the template's pids and the temp folder, then waits to be killed."""

import sys
import time

import psutil
import swayhost

policy = swayhost.RecoveryPolicy(fork_template=True)
worker = swayhost.WorkerOptions(recovery=policy)
backend = swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker))
with backend.as_base() as view:
    view.logprob_of("a b", " c")
template = psutil.Process(backend.pid).ppid()
print(backend.pid, template, flush=True)
time.sleep(120)
sys.exit(0)
