"""What the sweep driver's forkserver imports once, before it forks every worker from itself.

The trainer's imports (torch, Lightning, MLflow, Optuna) cost ~7 s of CPU; forked from a process that
has them, a worker starts in a fraction of a second. The forkserver must outlive every worker's clean
stop: a SIGTERM or SIGHUP sent to the whole process group would end it at once, and with it the
workers' sign that the driver is alive. So it ignores both and ends, as it does anyway, when the
driver does; each worker restores the default handlers first thing.
"""

from __future__ import annotations

import signal

for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # each worker restores TERM and HUP (driver._worker)
    signal.signal(_sig, signal.SIG_IGN)

# what every worker imports (driver._worker): none of it is left to import after the fork, where a
# Ctrl-C landing inside an import printed that worker's traceback
import ganlab.sweeping.study  # noqa: E402, F401
import ganlab.sweeping.summary  # noqa: E402, F401
import ganlab.sweeping.trial  # noqa: E402, F401
import ganlab.sweeping.worker_faults  # noqa: E402, F401

signal.signal(signal.SIGINT, signal.default_int_handler)  # the forkserver ignores it from here, and its
# workers get back what it was now: Ctrl-C during the import above printed the forkserver's traceback
