"""The failure rules of distributed training: every wait has a deadline, a rank that fails tells the others,
and a job left with a broken rank ends instead of hanging at exit.

- :meth:`Link.wait` polls nonblocking requests (driving MPI's progress) and, between polls, a control
  communicator for a peer's failure notice; past the deadline it raises :class:`DistributedError`.
- :meth:`Link.notify` sends a short notice to every other rank (nonblocking, so a rank that waits on a
  stalled peer can still send it).
- At exit, a broken link waits (the same deadline) for every rank at a barrier on the control communicator
  so that each prints its own error; when one never arrives (a stalled rank) it calls ``MPI_Abort``, which
  ends the whole job.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Sequence
from typing import Any

NOTICE_TAG = 7301


class DistributedError(RuntimeError):
    """Distributed training cannot go on: a peer rank failed or stalled, or the ranks disagree. The message
    names the rank that reports it and the cause."""


class DistributedConfigError(DistributedError, ValueError):
    """The ranks were started with different configurations (model, batch size, seed, backend, data...):
    raised on every rank before the first step, naming each field that differs and its value per rank."""


def import_mpi() -> Any:
    """``mpi4py.MPI``, or an ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:
        raise ImportError(
            'distributed training needs mpi4py and an MPI library: pip install "cnnkern[mpi]" with an MPI '
            f"installed (Debian: apt-get install openmpi-bin libopenmpi-dev); importing it failed: {exc}"
        ) from exc
    return MPI


_LINKS: list[Link] = []


def _at_exit() -> None:
    for link in _LINKS:
        if link.broken:
            link.shutdown()


class Link:
    """Waits with a deadline and failure notices over ``comm`` (collectives) and ``ctl`` (control)."""

    def __init__(self, mpi: Any, comm: Any, ctl: Any, timeout: float) -> None:
        self.mpi, self.comm, self.ctl = mpi, comm, ctl
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = timeout
        self.broken = False
        self._sent: list[Any] = []
        if not _LINKS:
            atexit.register(_at_exit)
        _LINKS.append(self)

    def where(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def check_usable(self) -> None:
        if self.broken:
            raise DistributedError(
                f"{self.where()}: this strategy saw a failure earlier; the MPI job must be restarted"
            )

    def wait(self, requests: Sequence[Any], what: str) -> None:
        """Complete ``requests`` (MPI requests), or raise DistributedError when a peer reports a failure or
        ``timeout`` seconds pass."""
        test_all = self.mpi.Request.Testall
        deadline = time.monotonic() + self.timeout
        polls = 0
        while not test_all(list(requests)):
            self.poll_notice()
            polls += 1
            if polls > 64:  # past a short spin, yield the core (ranks often share a machine's cores)
                if time.monotonic() > deadline:
                    err = DistributedError(
                        f"{self.where()}: {what} did not complete within {self.timeout:g} s (timeout; "
                        "CNNKERN_DIST_TIMEOUT or MPIStrategy(timeout=)): another rank stalled or died"
                    )
                    self.notify(f"{err}")
                    raise err
                time.sleep(min(1e-3, 2e-6 * polls))

    def poll_notice(self) -> None:
        """Raise DistributedError if another rank has reported a failure."""
        status = self.mpi.Status()
        if self.ctl.Iprobe(source=self.mpi.ANY_SOURCE, tag=NOTICE_TAG, status=status):
            source = status.Get_source()
            text = self.ctl.recv(source=source, tag=NOTICE_TAG)
            self.broken = True
            raise DistributedError(f"{self.where()}: stopping because rank {source} failed: {text}")

    def notify(self, text: str) -> None:
        """Tell every other rank that this one failed (once); marks the link broken."""
        if self.broken:
            return
        self.broken = True
        for r in range(self.size):
            if r != self.rank:
                self._sent.append(self.ctl.isend(text, dest=r, tag=NOTICE_TAG))

    def shutdown(self) -> None:
        """At exit after a failure: meet every rank at a barrier, else abort the job (a stalled rank would
        otherwise keep ``mpirun`` and the finalisation of the others waiting for ever)."""
        request = self.ctl.Ibarrier()
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                sys.stderr.write(
                    f"cnnkern.distributed: {self.where()}: a rank did not stop within {self.timeout:g} s "
                    "after the failure above; aborting the MPI job\n"
                )
                sys.stderr.flush()
                self.mpi.COMM_WORLD.Abort(1)
            time.sleep(1e-3)
