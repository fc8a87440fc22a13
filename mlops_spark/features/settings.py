"""Settings of the ``features`` step (the ``features:`` section of the YAML settings)."""

from __future__ import annotations

from pydantic import Field

from mlops_spark.config.base import Section


class FeatureSettings(Section):
    definitions_dir: str | None = None
    """Folder of feature-set definitions ``<name>.yaml``; default ``features/`` next to the
    settings files (``conf/features``), so definitions are versioned with the code."""

    partitions: int | None = Field(default=None, ge=1)
    """Partitions of the by-entity repartition of the window engine; default the larger of the
    shuffle partitions and Spark's size estimate of the input / ``partition_bytes``."""

    partition_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Input bytes (Spark's plan estimate, i.e. compressed file bytes of the columns read) per
    partition when ``partitions`` is not set. A Python worker holds one partition's rows
    (the columns the engine needs, in Arrow) while it sorts and evaluates them."""

    chunk_rows: int = Field(default=1_000_000, ge=1)
    """Rows the engine evaluates per vectorised call (whole entities; a larger entity is taken whole)."""
