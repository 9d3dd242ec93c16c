"""Errors a user can act on. The CLI prints them as one line; the nodes show them in the graph."""


class CavError(Exception):
    """A problem with the user's input or files, stated so the user knows what to change."""


class TrainingInterrupted(CavError):
    """Training was cancelled by the host; nothing partial was written."""


class NonFiniteLoss(CavError):
    """The loss became NaN/inf; the run stopped before corrupting the adapter."""


class OutOfDeviceMemory(CavError):
    """A training step needed more device memory than was free; the run stopped and wrote nothing."""
