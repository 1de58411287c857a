"""Exceptions raised by cnnkern beyond the built-in ValueError / TypeError / IndexError."""

from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot load here; the message says why and how to fix it."""


class AllocationTooLargeError(MemoryError, ValueError):
    """A call would allocate more than the memory limit (``CNNKERN_MAX_ALLOC_BYTES``, else a quarter of the
    memory available). A MemoryError raised before anything is allocated; also a ValueError, since its cause
    is an argument."""


class NonFiniteInputError(ValueError):
    """Input data holding NaN or +-Inf where finite numbers are needed (``predict``, ``evaluate``, ``fit``):
    the message names the argument and the index of the first bad sample (also in ``.argument``, ``.index``).
    """

    def __init__(self, message: str, argument: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.argument = argument
        self.index = index


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss (or gradient) and stopped BEFORE applying that step's update: the
    weights and the optimizer state are those after the previous step. ``.epoch`` and ``.step`` (0-based,
    the step within the epoch) say where; ``.loss`` is the value seen. See :mod:`cnnkern.nonfinite`."""

    def __init__(
        self, message: str, epoch: int | None = None, step: int | None = None, loss: float | None = None
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.loss = loss


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, of another format or version, or written for
    another model or other training data. The message names the file and what does not match."""
