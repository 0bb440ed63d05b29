"""Exceptions raised by the workbench. Every message names the file/node/op involved and what to do."""

from __future__ import annotations

from typing import Any


class WorkbenchError(Exception):
    """Base class for every error the workbench raises on bad input or unreachable targets."""


class ModelLoadError(WorkbenchError, ValueError):
    """A model file is missing, not ONNX, truncated, or references unsafe external data."""


class InputError(WorkbenchError, ValueError):
    """Feeds, datasets or arguments do not match what the model or function expects."""


class UnsupportedError(WorkbenchError):
    """A device, backend or precision cannot do what was asked."""


class NothingQuantizedError(UnsupportedError):
    """int8 quantization left no node in int8 (every quantizable node excluded or unsupported)."""


class OperationCancelled(WorkbenchError):
    """Long work was cancelled (widget Cancel button or CancelToken); nothing partial is returned."""


class AccuracyNotReachedError(WorkbenchError):
    """An accuracy target could not be met; ``best`` carries the best result found."""

    def __init__(self, message: str, best: Any = None):
        super().__init__(message)
        self.best = best
