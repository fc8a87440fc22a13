"""Settings of the ``ingest`` step (the ``ingest:`` section of the YAML settings)."""

from __future__ import annotations

from pydantic import Field

from mlops_spark.config.base import Section


class IngestSettings(Section):
    sources_dir: str | None = None
    """Folder of source definitions ``<name>.yaml``; default ``sources/`` next to the
    settings files (``conf/sources``), so sources are versioned with the code."""

    footer_threads: int = Field(default=8, ge=1, le=64)
    """Parquet footers read in parallel by the driver when inspecting new files
    (S3 round trips dominate, so more threads than cores pays off)."""

    open_files_per_task: int = Field(default=128, ge=0, le=10_000)
    """Bronze files a write task keeps open at once, one per event date it holds (Spark's
    ``spark.sql.maxConcurrentOutputFileWriters``, for the bronze write only). A task's
    rows then go straight to their date's file instead of being sorted by date first;
    beyond this many dates the task sorts the rest. 0 sorts everything (Spark's default).
    Parquet shares the memory pool between open files by shrinking their row groups."""
