"""ipywidgets views over the public API: the ``Workbench`` app and panels usable on their own.

Widgets hold plain state and call the same functions a notebook user calls; long work runs in
a background thread with a progress bar and a Cancel button (``background=False`` runs it
synchronously).
"""

from __future__ import annotations

from ._base import JobControls
from .app import FilePicker, Workbench
from .views import AffinityView, ConvertPanel, ExplorePanel, ModelView, ReportPanel, TradeoffView

__all__ = [
    "AffinityView",
    "ConvertPanel",
    "ExplorePanel",
    "FilePicker",
    "JobControls",
    "ModelView",
    "ReportPanel",
    "TradeoffView",
    "Workbench",
]
