"""A granian worker's lifetime tied to its parent's.

granian forks its workers. When the parent dies without stopping them (`kill -9`, an OOM
kill), a worker would live on as an orphan still bound to the port, so the process manager's
restart of the instance could not listen there. On Linux the kernel can signal a process when
its parent dies (`prctl(PR_SET_PDEATHSIG)`): each worker asks for SIGTERM, and stops as it
would on a graceful shutdown.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask for SIGTERM when the process that forked this one dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
