"""The notebooks in notebooks/ run top to bottom against the demo lake, as CI runs them.

The notebooks run one after the other in one Jupyter kernel (a kernel spec registered
in a temporary folder, never in the user's home) whose environment points
``MLOPS_LAKE_ROOT`` at the demo lake; each starts from an empty namespace. A cell error
fails the test with the cell and its traceback; the checks then read what the cells
printed and compare it with what the demo reported.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.demo_lake import DemoLake
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow

NOTEBOOKS = REPO_ROOT / "notebooks"
KERNEL_NAME = "mlops-spark-tests"
CELL_TIMEOUT_SECONDS = 600


def summary_rows(demo: DemoLake) -> dict[str, int]:
    """``table -> rows`` from the table lines of the demo's summary."""
    found = re.findall(r"^\s+([a-z_]+\.[a-z_0-9]+)\s+([\d,]+) rows$", demo.stdout, flags=re.MULTILINE)
    return {name: int(rows.replace(",", "")) for name, rows in found}


def register_kernel(folder: Path, env: dict[str, str]) -> None:
    """A kernel spec for this interpreter with ``env`` in ``folder/<name>/kernel.json``."""
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mlops-spark (tests)",
        "language": "python",
        "env": env,
    }
    (folder / KERNEL_NAME).mkdir(parents=True)
    (folder / KERNEL_NAME / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")


def wait_gone(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no process of group ``pgid`` is left (the kernel's Spark JVM holds the lake's metastore)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise TimeoutError(f"kernel process group {pgid} still alive {timeout:.0f}s after shutdown")


@pytest.fixture(scope="module")
def kernel(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Jupyter kernel on the demo lake for the notebooks of this module (one Spark JVM start).

    Each notebook starts with ``%reset -f``, so none sees a name another one defined; what
    they share is the kernel's imported modules and its SparkSession, as in a user's kernel.
    """
    from jupyter_client.manager import KernelManager

    tmp = tmp_path_factory.mktemp("jupyter")
    # The kernel spec, connection files and IPython's profile live in the temporary folder, not the home directory.
    register_kernel(tmp / "jupyter" / "kernels", demo_lake.env())
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    patch.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
    patch.setenv("IPYTHONDIR", str(tmp / "ipython"))
    km = KernelManager(kernel_name=KERNEL_NAME)
    try:
        km.start_kernel(cwd=str(NOTEBOOKS))
        yield km
    finally:
        pgid = getattr(km.provisioner, "pgid", None) if km.has_kernel else None
        if km.has_kernel:
            # SIGKILL to the kernel's process group: its Spark JVM goes too, releasing the lake's metastore.
            km.shutdown_kernel(now=True)
        if pgid:
            wait_gone(pgid)
        patch.undo()


def execute(path: Path, km: object) -> str:
    """Run the notebook at ``path`` top to bottom in the shared kernel ``km``; returns all text it printed or displayed.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (its source and traceback in the message).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))  # no name from a notebook run before
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_SECONDS)
    client.execute()
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_analyst_notebook_runs_on_the_demo_lake(demo_lake: DemoLake, kernel: object) -> None:
    out = execute(NOTEBOOKS / "analyst_feature_tables.ipynb", kernel)
    rows = summary_rows(demo_lake)

    assert f"lake: {demo_lake.root}" in out
    for table in rows:
        assert table in out, f"the table listing lacks {table}"
    features = re.search(r"features\.customer_spend: ([\d,]+) rows, latest snapshot \S+ \(features as of (\S+) ", out)
    assert features is not None, out[-2000:]
    assert int(features.group(1).replace(",", "")) == rows["features.customer_spend"]
    # The latest snapshot period holds the demo's last day, 2024-07-31 (a daily or weekly period).
    assert "2024-07-31" <= features.group(2) <= "2024-08-06"
    travel = re.search(r"features\.customer_spend at version (\d+): ([\d,]+) rows; now: ([\d,]+) rows", out)
    assert travel is not None, out[-2000:]
    assert int(travel.group(2).replace(",", "")) == int(travel.group(3).replace(",", "")) == rows["features.customer_spend"]
    assert "function=ratio(amount_sum_7d, amount_sum_30d)" in out
    assert "null_customer_id" in out


def test_data_scientist_notebook_runs_on_the_demo_lake(demo_lake: DemoLake, kernel: object) -> None:
    out = execute(NOTEBOOKS / "data_scientist_training.ipynb", kernel)
    rows = summary_rows(demo_lake)

    preview = re.search(r"inputs at versions .*: ([\d,]+) rows, none with a feature row newer than its label", out)
    assert preview is not None, out[-2000:]
    assert int(preview.group(1).replace(",", "")) == rows["ml.churn_labels"]
    built = re.search(r"(customer_churn_notebook_[0-9a-f]{16}): ([\d,]+) rows in ml\.training_set_customer_churn_notebook; second run", out)
    assert built is not None, out[-2000:]
    assert int(built.group(2).replace(",", "")) == rows["ml.churn_labels"]
    assert re.search(r"candidate logged as run [0-9a-f]{32}", out)
    assert "champion v1 (9 features)" in out
    # The notebook's test split is the champion's own: its metric there is the one its run recorded.
    auc = re.search(r"champion ROC-AUC on these test rows: ([\d.]+); on its own test split at training: ([\d.]+)", out)
    assert auc is not None, out[-2000:]
    assert auc.group(1) == auc.group(2)
