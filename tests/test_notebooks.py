"""Every notebook runs top to bottom (nbclient, kernel "python3") in under two minutes."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
RICH = ("image/png", "image/svg+xml", "text/html")


def test_notebooks_are_there_and_committed_without_outputs():
    # other notebooks (e.g. 07_layers) may follow; these must be there
    assert {p.stem for p in NOTEBOOKS} >= {
        "01_quickstart",
        "02_mixed_precision",
        "03_int8_accuracy_control",
        "04_devices_and_affinity",
        "05_explore_and_report",
        "06_your_model",
    }
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail(
            "Jupyter kernel 'python3' is not installed; run "
            "`.venv/bin/python -m ipykernel install --sys-prefix --name python3` (make setup does)"
        )
    return "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_real_outputs(path, kernel_name, tmp_path, artifacts):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(tmp_path)}},  # files the notebook writes land here
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell on any error
    elapsed = time.perf_counter() - start
    done = artifacts / "notebooks"
    done.mkdir(exist_ok=True)
    nbformat.write(nb, done / path.name)  # the executed notebook, for people to look at
    assert elapsed < 120, f"{path.name} took {elapsed:.0f} s"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "image/png" in kinds or "image/svg+xml" in kinds, f"{path.name} shows no figure"
    assert "text/html" in kinds, f"{path.name} shows no table"
    assert "application/vnd.jupyter.widget-view+json" in kinds, f"{path.name} shows no widget"
    written = {p.name for p in tmp_path.iterdir()}
    expected = {
        "01_quickstart": {"quickstart_report.html"},
        "05_explore_and_report": {"explore_report.html", "study.json"},
        "06_your_model": {"your_model_report.html"},
    }.get(path.stem, set())
    assert expected <= written
