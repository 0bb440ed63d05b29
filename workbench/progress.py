"""Progress reporting and cancellation shared by every long operation.

Terminals get tqdm bars; notebooks/widgets install a sink with :func:`progress_sink`; a
:class:`CancelToken` installed with :func:`cancellable` stops work at the next progress step.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .errors import OperationCancelled

#: A sink receives (description, done, total, postfix) on every step.
Sink = Callable[[str, int, "int | None", str], None]

_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar(
    "wb_progress_sink", default=None
)
_token: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "wb_cancel_token", default=None
)
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("wb_quiet", default=False)


@dataclass
class CancelToken:
    """Set ``cancelled`` (or call :meth:`cancel`) from another thread to stop the running work."""

    cancelled: bool = False
    reason: str = "cancelled by user"
    _callbacks: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def cancel(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        self.cancelled = True
        for cb in list(self._callbacks):
            cb()

    def check(self) -> None:
        if self.cancelled:
            raise OperationCancelled(self.reason)


def check_cancelled() -> None:
    """Raise :class:`OperationCancelled` if the current context's token was cancelled."""
    token = _token.get()
    if token is not None:
        token.check()


@contextlib.contextmanager
def cancellable(token: CancelToken) -> Iterator[CancelToken]:
    """Run the enclosed work under ``token``."""
    reset = _token.set(token)
    try:
        yield token
    finally:
        _token.reset(reset)


@contextlib.contextmanager
def progress_sink(sink: Sink | None) -> Iterator[None]:
    """Send progress of the enclosed work to ``sink`` instead of tqdm."""
    reset = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(reset)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence tqdm bars of the enclosed work (nested steps inside a bigger operation)."""
    reset = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(reset)


class Task:
    """One progress bar: ``update()`` advances it and checks for cancellation."""

    def __init__(self, desc: str, total: int | None, disable: bool = False):
        self.desc = desc
        self.total = total
        self.done = 0
        self._sink = _sink.get()
        show_bar = self._sink is None and not disable and not _quiet.get()
        self._bar = (
            tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
            if show_bar
            else None
        )
        self._emit("")

    def _emit(self, postfix: str) -> None:
        if self._sink is not None:
            self._sink(self.desc, self.done, self.total, postfix)

    def update(self, n: int = 1, postfix: str = "") -> None:
        check_cancelled()
        self.done += n
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
        self._emit(postfix)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def task(desc: str, total: int | None = None, disable: bool = False) -> Iterator[Task]:
    """Context manager for one unit of long work with progress and cancellation."""
    check_cancelled()
    t = Task(desc, total, disable=disable)
    try:
        yield t
    finally:
        t.close()


def track(iterable, desc: str, total: int | None = None):
    """Iterate with progress and cancellation checks (like ``tqdm(iterable)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with task(desc, total) as t:
        for item in iterable:
            yield item
            t.update()
