"""Split a flagged batch into silver rows and quarantine rows (pure DataFrame functions).

Silver keeps rows that passed, or broke only ``warn`` rules; those carry the rule names
in ``_dq_warnings`` (keep-and-flag). Quarantine keeps rows that broke at least one
``quarantine`` rule, with the names of *every* rule they broke. Rows that broke a
``fail`` rule are never written: the pipeline stops first.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.validate.rules import ACTION, FAILED_RULES, PASS, QUARANTINE, WARN, WARNINGS

RUN_ID = "_dq_run_id"
RUN_DATE = "_run_date"
RULE_COLUMNS = (FAILED_RULES, WARNINGS, ACTION)


def batch_columns(flagged: DataFrame) -> list[str]:
    """The bronze columns of a flagged batch (everything but the rule outcome columns)."""
    return [c for c in flagged.columns if c not in RULE_COLUMNS]


def silver_rows(flagged: DataFrame, run_id: str) -> DataFrame:
    """Rows bound for silver.

    Args:
        flagged: output of :func:`mlops_spark.validate.rules.apply_rules`.
        run_id: the validation run id.

    Returns:
        The bronze columns, ``_dq_warnings`` (array<string>) and ``_dq_run_id`` (string),
        for rows whose action is ``pass`` or ``warn``.
    """
    return flagged.where(F.col(ACTION).isin(PASS, WARN)).select(*batch_columns(flagged), F.col(WARNINGS), F.lit(run_id).alias(RUN_ID))


def quarantine_rows(flagged: DataFrame, run_id: str, run_date: dt.date) -> DataFrame:
    """Rows bound for ``quarantine.<name>_rows``.

    Returns:
        The bronze columns, ``_failed_rules`` (array<string>, every rule broken),
        ``_dq_run_id`` (string) and ``_run_date`` (date), for rows whose action is ``quarantine``.
    """
    return flagged.where(F.col(ACTION) == QUARANTINE).select(
        *batch_columns(flagged), F.col(FAILED_RULES), F.lit(run_id).alias(RUN_ID), F.lit(run_date).alias(RUN_DATE)
    )
