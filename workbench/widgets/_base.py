"""Run / Cancel / progress controls shared by every panel, and small HTML helpers.

Work runs in a background thread (so the Cancel button is handled by the kernel while it runs)
under :func:`workbench.progress.progress_sink` and :func:`workbench.progress.cancellable`; with
``background=False`` it runs synchronously in the click handler (tests, scripts).
"""

from __future__ import annotations

import html
import threading
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..errors import AccuracyNotReachedError, OperationCancelled
from ..html_report import describe as describe_error
from ..progress import CancelToken, cancellable, progress_sink
from ..results import html_table
from ..viz.plots import figure_svg
from ..viz.svg import sanitize_svg

#: CSS for messages inside HTML widgets (scoped by class, no global styles)
STYLE = (
    "<style>.wb-error{color:#a61b1b;background:#fde8e8;border-left:4px solid #c44e52;"
    "padding:4px 8px;display:block;white-space:pre-wrap}"
    ".wb-ok{color:#1e6b34}.wb-note{color:#5b6475;font-style:italic}"
    ".wb-table{border-collapse:collapse;font-size:12px}.wb-table td,.wb-table th"
    "{border:1px solid #d9dde5;padding:2px 6px;text-align:left}"
    ".wb-pareto td{background:#e7f5ea;font-weight:600}.wb-mismatch td{background:#fff4d6}"
    ".wb-svg svg{max-width:100%;height:auto}"
    ".wb-traceback pre{font-size:11px;max-height:300px;overflow:auto;white-space:pre-wrap}"
    ".wb-banner{display:block;background:#e7f5ea;border-left:4px solid #55a868;padding:6px 10px}"
    ".wb-banner b{font-size:1.05em}.wb-table td{overflow-wrap:break-word}</style>"
)


def error_html(message: str, details: str | None = None) -> str:
    """A readable, escaped error box; ``details`` (a traceback) one click away."""
    box = f'{STYLE}<span class="wb-error">{html.escape(message)}</span>'
    if details:
        box += (
            '<details class="wb-traceback"><summary>traceback</summary>'
            f"<pre>{html.escape(details)}</pre></details>"
        )
    return box


def note_html(message: str, klass: str = "wb-note") -> str:
    return f'<span class="{klass}">{html.escape(message)}</span>'


def svg_html(svg: str | bytes, prefix: str) -> str:
    """Sanitized inline SVG (the allowlist of :func:`workbench.viz.svg.sanitize_svg`)."""
    return f'{STYLE}<div class="wb-svg">{sanitize_svg(svg, prefix)}</div>'


def figure_html(fig: Any, prefix: str) -> str:
    """A matplotlib figure as sanitized inline SVG."""
    return svg_html(figure_svg(fig), prefix)


def table_html(rows: list[dict[str, Any]], title: str = "") -> str:
    return STYLE + html_table(rows, title=title)


class JobControls(widgets.HBox):
    """Run and Cancel buttons, a progress bar and a status line driving one piece of work.

    Plain state: ``state`` is ``idle | running | done | error | cancelled``, ``error`` the
    readable message of the last failure (its ``traceback`` one click away in the status line),
    ``result`` the last value returned by the work. Callables in ``listeners`` are called with
    the final state when a job ends (the app enables its Report button that way).
    """

    def __init__(self, run_label: str = "Run", background: bool = True, icon: str = "play"):
        self.run_button = widgets.Button(description=run_label, button_style="primary", icon=icon)
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", disabled=True, button_style="warning"
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, layout=widgets.Layout(width="220px")
        )
        self.status = widgets.HTML("")
        self.background = background
        self.state = "idle"
        self.error: str | None = None
        self.traceback: str | None = None
        self.result: Any = None
        self._token: CancelToken | None = None
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[str], None]] = []
        self.cancel_button.on_click(lambda _b: self.cancel())
        super().__init__([self.run_button, self.cancel_button, self.progress, self.status])

    # -- progress sink: called from the worker thread for every step of the work
    def _sink(self, desc: str, done: int, total: int | None, postfix: str) -> None:
        if total:
            self.progress.max = max(int(total), 1)
            self.progress.value = min(int(done), self.progress.max)
        else:
            self.progress.max = max(self.progress.max, int(done) + 1)
            self.progress.value = int(done)
        count = f"{done}/{total}" if total else f"{done}"
        self.status.value = note_html(f"{desc}: {count} {postfix}".strip())

    def start(
        self,
        work: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``work()``; hand its value to ``on_done`` or show a readable error."""
        if self.running:
            self.status.value = note_html("already running — cancel it first")
            return
        self._token = CancelToken()
        self.state, self.error, self.traceback = "running", None, None
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value, self.progress.bar_style = 0, "info"
        self.status.value = note_html("running…")
        if self.background:
            self._thread = threading.Thread(
                target=self._run, args=(work, on_done, on_error), daemon=True
            )
            self._thread.start()
        else:
            self._run(work, on_done, on_error)

    def _run(
        self,
        work: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        token = self._token
        assert token is not None
        try:
            with progress_sink(self._sink), cancellable(token):
                value = work()
                token.check()  # a cancel that arrived after the last step still counts
            self.cancel_button.disabled = True  # too late to cancel: showing the result
            self.result = value
            on_done(value)
            self.state = "done"
            self.progress.bar_style = "success"
            self.progress.value = self.progress.max
            self.status.value = note_html("done", "wb-ok")
        except OperationCancelled as e:
            self.state, self.error = "cancelled", str(e)
            self.progress.bar_style = "warning"
            self.status.value = note_html(f"cancelled ({e}); nothing was changed")
        except Exception as e:  # shown in the app as a readable message, never a traceback
            self.state, self.error = "error", describe_error(e)
            self.traceback = traceback.format_exc()
            self.progress.bar_style = "danger"
            self.status.value = error_html(self.error, self.traceback)
            if on_error is not None:
                try:
                    on_error(e)
                except Exception as inner:  # a failing error view must not hide the error
                    message = f"{self.error}\n({describe_error(inner)})"
                    self.status.value = error_html(message, self.traceback)
        finally:
            self.run_button.disabled, self.cancel_button.disabled = False, True
            for listener in self.listeners:
                listener(self.state)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def cancel(self) -> None:
        """Ask the running work to stop at its next progress step."""
        if self._token is not None and self.running:
            self._token.cancel("cancelled by user")
            self.status.value = note_html("cancelling…")

    def wait(self, timeout: float | None = None) -> str:
        """Block until background work ends (tests, scripts); returns the final state."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state


def not_reached_html(exc: AccuracyNotReachedError) -> str:
    """Explain an unreachable accuracy target and show the best result found."""
    best = exc.best
    body = error_html(str(exc))
    if best is not None and hasattr(best, "summary_rows"):
        body += table_html(best.summary_rows(), title=f"Best result found ({type(best).__name__})")
    return body
