"""The three notebooks in notebooks/ run top to bottom on tiny settings.

Each notebook is executed with nbclient in a fresh ``python3`` kernel (the interpreter running
pytest), ``NEUROMAML_NB_QUICK=1`` in its environment and a temporary working directory (the
notebooks write under ``./_work``). Any cell error fails the test; each notebook must also
render at least one plot. The committed files must carry no outputs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ["01_meta_training.ipynb", "02_deploy_and_verify.ipynb", "03_onchip_learning.ipynb"]
FIRST_IMPORT = {"01_meta_training.ipynb": "neuromaml.deploy", "02_deploy_and_verify.ipynb": "neuromaml.deploy",
                "03_onchip_learning.ipynb": "neuromaml.emulator"}


def _read(name):
    return nbformat.read(NB_DIR / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    for i, c in enumerate(code):
        assert not c.get("outputs"), f"{name}: code cell {i} has stored outputs (clear them before committing)"
        assert c.get("execution_count") is None, f"{name}: code cell {i} has an execution count"
    first = code[0].source
    # Lava must set multiprocessing's start method before torch/tqdm resolve it
    assert f"import {FIRST_IMPORT[name]}" in first, f"{name}: first code cell must import {FIRST_IMPORT[name]}"
    assert 'os.environ.get("NEUROMAML_NB_QUICK") == "1"' in first, f"{name}: QUICK switch missing"


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("NEUROMAML_NB_QUICK", "1")
    nb = _read(name)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()           # raises CellExecutionError (with the cell and traceback) on any error
    seconds = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no plot was rendered"
    assert (tmp_path / "_work").is_dir(), f"{name}: did not work under ./_work"
    print(f"{name}: {seconds:.1f} s, {len(images)} plots")
