"""Settings of the ``validate`` step (the ``validation:`` section of the YAML settings)."""

from __future__ import annotations

from pydantic import Field

from mlops_spark.config.base import Section


class ValidateSettings(Section):
    suites_dir: str | None = None
    """Folder of expectation suites ``<name>.yaml``; default ``expectations/`` next to the
    settings files (``conf/expectations``), so suites are versioned with the code."""

    data_docs: bool = True
    """Write Great Expectations Data Docs HTML under ``<reports_root>/data_docs/<suite>``
    (local report roots only; skipped with a log line for remote ones)."""

    rows_per_file: int = Field(default=1_000_000, ge=1)
    """Target rows per file when one date is validated: silver and quarantine rows of the date
    are written in ``ceil(rows / rows_per_file)`` files instead of one per shuffle partition
    (200 tiny files a day with 200 partitions). Validating all dates writes one file per date."""

    result_rows_sample: int = 20
    """How many unexpected values Great Expectations keeps per expectation (``partial_unexpected_list``)."""
