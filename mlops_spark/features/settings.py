"""Settings of the ``features`` step (the ``features:`` section of the YAML settings)."""

from __future__ import annotations

from pydantic import Field

from mlops_spark.config.base import Section


class FeatureSettings(Section):
    definitions_dir: str | None = None
    """Folder of feature-set definitions ``<name>.yaml``; default ``features/`` next to the
    settings files (``conf/features``), so definitions are versioned with the code."""

    partitions: int | None = Field(default=None, ge=1)
    """Partitions of the by-entity repartition of the window engine; default the shuffle partitions."""

    chunk_rows: int = Field(default=1_000_000, ge=1)
    """Rows the engine buffers per vectorised call (whole entities; a larger entity is taken whole)."""
