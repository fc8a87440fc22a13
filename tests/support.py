"""Helpers shared by tests: paths and settings builders (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from mlops_spark.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL_RAW = REPO_ROOT.parent / "shared" / "data" / "online_retail" / "raw"


def make_settings(lake_root: Path, **overrides: object) -> Settings:
    """Settings of the ``local`` environment on ``lake_root``, sized for tests (2 cores)."""
    base: dict[str, object] = {
        "lake_root": str(lake_root),
        "spark": {
            "master": "local[2]",
            "ui_enabled": False,
            "shuffle_partitions": 2,
            "driver_memory": "2g",
            "conf": {"spark.ui.showConsoleProgress": "false", "spark.sql.adaptive.coalescePartitions.minPartitionSize": "1"},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    return load_settings(env="local", conf_dir=REPO_ROOT / "conf", overrides=base, environ={})
