"""A process's lifetime: tied to its parent's, what its start made kept out of the garbage
collector's way, and a drain before it stops.

granian forks its workers. When the parent dies without stopping them (`kill -9`, an OOM
kill), a worker would live on as an orphan still bound to the port, so the process manager's
restart of the instance could not listen there. On Linux the kernel can signal a process when
its parent dies (`prctl(PR_SET_PDEATHSIG)`): each worker asks for SIGTERM, and stops as it
would on a graceful shutdown.

On SIGTERM granian stops accepting at once and lets the requests in flight finish. A load
balancer learns of it only from refused connections; one that health-checks `/readyz` should
rather see the instance fail its check first, while it still serves, and stop sending it
requests. `Drain` does that: SIGTERM turns readiness to 503 for a while, then the worker stops
as granian stops on SIGINT (the requests in flight still finish).
"""

import asyncio
import ctypes
import gc
import os
import signal
import sys

from bazaar.platform.observability import log

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


async def freeze_what_started() -> None:
    """Take every object the start made out of the garbage collector's scans (`gc.freeze`).

    A started process holds some 160,000 long-lived objects (modules, routes, mappers,
    compiled statements); each full collection scanned them all, 50 to 80 ms of CPU. Under a
    CPU quota of a quarter core that is a 200 to 300 ms stall for every request in flight,
    and it set the p99 of cached product pages that `bazaar bench` measured. Frozen objects
    are still freed when nothing refers to them; only cycles among them would stay.
    """
    gc.collect()
    gc.freeze()
    log.info("startup_objects_frozen", objects=gc.get_freeze_count())


class Drain:
    """SIGTERM fails readiness for `seconds` (long enough for the balancer's checks to take
    the instance out of rotation), then stops the server; SIGINT still stops it at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    async def arm(self) -> None:
        """Take SIGTERM over (a startup hook: it runs on granian's worker loop, after granian
        set its own handlers, and leaves granian's SIGINT handler to stop the server)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin)

    def begin(self) -> None:
        if self.draining:  # granian's parent passes SIGTERM on: once is enough
            return
        self.draining = True
        log.info("draining", seconds=self.seconds)
        loop = asyncio.get_running_loop()
        loop.call_later(self.seconds, os.kill, os.getpid(), signal.SIGINT)

    async def problem(self) -> str | None:
        """A readiness check: what is wrong while draining."""
        return "shutting down" if self.draining else None
