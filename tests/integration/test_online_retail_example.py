"""The Online Retail example (conf/examples/online_retail/run.sh) end to end, on a subset of the real files.

Every 8th trading day of the whole year keeps every monthly cut-off of the full run
(2011-01-01 .. 2011-09-01) and so the example's time-based split, at an eighth of the rows.
The script runs in a subprocess exactly as documented; the test checks that every raw row
is accounted for (silver + quarantine) and that a test ROC-AUC above chance is reported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support import REPO_ROOT

RUN_SH = REPO_ROOT / "conf" / "examples" / "online_retail" / "run.sh"
EVERY_NTH_DAY = 8


@pytest.mark.slow
def test_example_on_a_subset_accounts_for_every_row_and_reports_test_roc_auc(online_retail_raw, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    files = sorted(online_retail_raw.glob("*.parquet"))[::EVERY_NTH_DAY]
    for path in files:
        shutil.copy(path, raw / path.name)
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(
        MLOPS_LAKE_ROOT=str(tmp_path / "lake"),
        MLOPS_SPARK__MASTER="local[2]",
        MLOPS_SPARK__UI_ENABLED="false",
        MLOPS_SPARK__SHUFFLE_PARTITIONS="2",
        MLOPS_SPARK__DRIVER_MEMORY="2g",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # Only the snapshots the cut-offs look up (the day before 2011-01-01 .. 2011-09-01).
        FEATURES_START="2010-12-31",
        FEATURES_END="2011-08-31",
    )
    proc = subprocess.run(["bash", str(RUN_SH), str(raw)], env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout
    assert proc.returncode == 0, f"run.sh exited {proc.returncode}\n{out[-3000:]}\n{proc.stderr[-3000:]}"

    validated = re.search(r"validated bronze\.online_retail .*?: (\d+) rows in, (\d+) to silver\.online_retail, (\d+) to quarantine", out)
    assert validated, out
    rows_in, silver, quarantined = (int(g) for g in validated.groups())
    assert rows_in == rows == silver + quarantined and 0 < quarantined < rows_in
    assert '"cutoffs": ["2011-01-01", "2011-02-01"' in out and '"2011-09-01"]' in out
    auc = re.search(r"test ROC-AUC \(time-based split: labels at cut-offs from 2011-08-01 on\): ([0-9.]+)", out)
    assert auc, out
    print(f"subset of {len(files)} files, {rows} rows: test ROC-AUC {auc.group(1)}")  # shown with pytest -s
    assert 0.5 < float(auc.group(1)) <= 1.0
