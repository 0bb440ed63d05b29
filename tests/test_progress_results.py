"""Progress sinks, cancellation, result JSON round-trip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import workbench as wb
from workbench.progress import CancelToken, cancellable, progress_sink, task, track
from workbench.results import Result


def test_progress_sink_receives_steps():
    seen = []
    with progress_sink(lambda desc, done, total, post: seen.append((desc, done, total, post))):
        with task("calibrating", total=3) as t:
            for i in range(3):
                t.update(postfix=f"item {i}")
    assert seen[0] == ("calibrating", 0, 3, "")
    assert seen[-1] == ("calibrating", 3, 3, "item 2")


def test_cancel_token_stops_work():
    token = CancelToken()
    done = []
    with pytest.raises(wb.OperationCancelled, match="stop now"), cancellable(token):
        for i in track(range(10), "work"):
            done.append(i)
            if i == 2:
                token.cancel("stop now")
    assert done == [0, 1, 2]


@dataclass(frozen=True)
class _Example(Result):
    model: object
    values: tuple
    table: dict
    arr: object
    score: float


def test_result_json_roundtrip(tmodels):
    r = _Example(tmodels.mlp(), (1, 2.5, "a"), {"n1": {"why": "x"}}, np.arange(3), float("inf"))
    back = _Example.from_json(r.to_json())
    assert back.model.SerializeToString() == r.model.SerializeToString()
    assert back.values == (1, 2.5, "a") and back.table == {"n1": {"why": "x"}}
    assert np.array_equal(back.arr, np.arange(3)) and back.score == float("inf")
    assert "values=(1, 2.5, 'a')" in repr(r)
    assert "ModelProto 5 nodes" in r._repr_html_()
