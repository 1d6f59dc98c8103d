"""Process pools whose workers exit when the process that made them dies, however it died.

A plain ProcessPoolExecutor outlives a parent killed with SIGKILL (a scheduler's time limit,
the OOM killer): each worker waits forever on its call queue, whose write end it holds
itself; with the forkserver start method the fork server waits for the workers (they hold
its "alive" pipe), and multiprocessing's resource tracker, which ignores SIGTERM, waits for
all of them. :class:`ParentBoundPool` gives every worker the read end of a pipe whose only
write end stays in the parent; a daemon thread in the worker ends it (``os._exit``) when that
pipe reaches EOF, i.e. when the parent is gone. The fork server and the resource tracker then
lose their last client and exit by themselves. Any start method, any POSIX system.

The parent's write end closes when the pool is garbage collected: shut it down with
``wait=True`` (the default, and what ``with`` does) before dropping it, or running tasks end.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

ORPHANED_EXIT_CODE = 1


class ParentBoundPool(ProcessPoolExecutor):
    """A ProcessPoolExecutor of ``workers`` processes that exit with this process."""

    def __init__(self, workers: int, mp_context: BaseContext | None = None):
        ctx = mp_context or multiprocessing.get_context()
        self._lifeline, self._parent_end = ctx.Pipe(duplex=False)
        # fork copies the parent's write end into each worker: the worker closes its copy
        forked_copy = self._parent_end if ctx.get_start_method() == "fork" else None
        super().__init__(workers, mp_context=ctx, initializer=_exit_with_parent,
                         initargs=(self._lifeline, forked_copy))


def _exit_with_parent(lifeline: Connection, forked_copy: Connection | None) -> None:
    """Worker initializer: watch the pipe that only the parent writes to."""
    if forked_copy is not None:
        forked_copy.close()
    threading.Thread(target=_exit_at_eof, args=(lifeline,), name="exit-with-parent",
                     daemon=True).start()


def _exit_at_eof(lifeline: Connection) -> None:
    try:
        lifeline.recv_bytes()  # nothing is ever sent: this returns at EOF only
    except (EOFError, OSError):
        pass
    os._exit(ORPHANED_EXIT_CODE)
