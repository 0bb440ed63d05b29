"""The README's Python quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python quickstart"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    study = namespace["study"]
    assert {r.variant for r in study.records} >= {"f32", "f16", "int8"}
    assert namespace["mixed"].model is not None and namespace["int8"].final_metric >= 0.97
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "f32" in html
