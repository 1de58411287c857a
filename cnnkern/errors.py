"""Exceptions raised by cnnkern beyond the built-in ValueError / TypeError / IndexError."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot load here; the message says why and how to fix it."""
