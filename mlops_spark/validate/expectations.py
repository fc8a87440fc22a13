"""Batch expectations with Great Expectations 1.x on a Spark DataFrame, and batch rules.

GX runs in an ephemeral (in-memory) context: a Spark data source, a DataFrame asset
with a whole-dataframe batch definition, one :class:`ExpectationSuite` built from the
suite file, and a :class:`ValidationDefinition` (inside a :class:`Checkpoint` that
updates Data Docs when they are enabled). GX computes its metrics with several Spark
jobs; the caller passes a cached DataFrame so they re-read memory, not bronze, and GX's
own ``persist`` is off so nothing stays cached after the run.

Freshness has no direct GX expectation. It is a batch rule computed in the same
aggregate as the row-rule counts, and reported with the same result shape as a GX
result (type ``expect_column_max_to_be_fresh``, kwargs, success, observed value).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.errors import ConfigError
from mlops_spark.log import fields
from mlops_spark.validate.suite import SPARK_TYPES, ExpectationSpec, FreshnessRule, Suite

log = logging.getLogger(__name__)

FRESHNESS_TYPE = "expect_column_max_to_be_fresh"


def _expectation_class(type_name: str) -> type:
    import great_expectations.expectations as gxe

    class_name = "".join(part.capitalize() for part in type_name.split("_"))
    cls = getattr(gxe, class_name, None)
    if not type_name.startswith("expect_") or not isinstance(cls, type) or not issubclass(cls, gxe.Expectation):
        raise KeyError(type_name)
    return cls


def schema_specs(suite: Suite) -> list[ExpectationSpec]:
    """``columns`` of the suite as GX expectations: each column exists and has its type (action ``fail``)."""
    specs: list[ExpectationSpec] = []
    for column, type_name in suite.columns.items():
        specs.append(ExpectationSpec(type="expect_column_to_exist", kwargs={"column": column}, action="fail"))
        specs.append(
            ExpectationSpec(
                type="expect_column_values_to_be_of_type", kwargs={"column": column, "type_": SPARK_TYPES[type_name]}, action="fail"
            )
        )
    return specs


def _build(spec: ExpectationSpec, index: int) -> Any:
    cls = _expectation_class(spec.type)
    return cls(**spec.kwargs, meta={"action": spec.action, "index": index})


def check_expectation_specs(suite: Suite) -> None:
    """Build every expectation once so a bad type or argument fails at load time.

    Raises:
        ConfigError: unknown expectation type or invalid arguments, naming the suite file.
    """
    for i, spec in enumerate(suite.expectations):
        try:
            _build(spec, i)
        except KeyError:
            raise ConfigError(f"{suite.source}: expectations.{i}: unknown expectation type '{spec.type}'") from None
        except Exception as exc:  # GX raises pydantic and its own errors for bad kwargs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{suite.source}: expectations.{i} ({spec.type}): {first}") from None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def run_expectations(
    df: DataFrame,
    suite: Suite,
    docs_dir: Path | None = None,
    sample_size: int = 20,
    schema_only: bool = False,
) -> list[dict[str, Any]]:
    """Validate ``df`` with the suite's schema and batch expectations using GX.

    Args:
        df: the batch, preferably cached (GX issues one or more Spark jobs per expectation).
        suite: the suite; ``columns`` and ``expectations`` are used.
        docs_dir: folder for Data Docs HTML, or ``None`` for none.
        sample_size: unexpected values GX keeps per expectation.
        schema_only: run only the column existence and type expectations.

    Returns:
        One dict per expectation: ``expectation_type``, ``column``, ``kwargs`` (JSON),
        ``success``, ``observed_value`` (JSON), ``unexpected_count``, ``element_count``,
        ``details`` (JSON: sample of unexpected values or the exception), ``action``.
    """
    specs = schema_specs(suite) + ([] if schema_only else list(suite.expectations))
    if not specs:
        return []
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

    sites = {}
    if docs_dir is not None:
        sites = {
            "local": {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
        data_docs_sites=sites,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    # persist=False: the caller owns caching; GX would otherwise cache and never release.
    asset = context.data_sources.add_spark(name="mlops_spark", persist=False).add_dataframe_asset(name=suite.name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_batch")
    gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=[_build(s, i) for i, s in enumerate(specs)]))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}_batch", data=batch_definition, suite=gx_suite)
    )
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": sample_size}
    if docs_dir is not None:
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite.name}_checkpoint",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format=result_format,
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": df})
        validation = next(iter(outcome.run_results.values()))
        log.info("data docs written", extra=fields(suite=suite.name, path=str(docs_dir / "index.html")))
    else:
        validation = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)
    rows = []
    for result in validation.results:
        config_ = result.expectation_config
        if config_ is None:  # GX sets it on every result of a suite run
            raise RuntimeError(f"suite '{suite.name}': Great Expectations returned a result without its expectation")
        kwargs = {k: v for k, v in dict(config_.kwargs).items() if k != "batch_id"}
        details = result.result.get("partial_unexpected_list")
        exception = result.exception_info or {}
        if exception.get("raised_exception"):
            details = {"exception": exception.get("exception_message")}
        column = kwargs.get("column") or ",".join(kwargs.get("column_list", []) or [])
        rows.append(
            {
                "expectation_type": config_.type,
                "column": column or None,
                "kwargs": _json(kwargs),
                "success": bool(result.success),
                "observed_value": _json(result.result.get("observed_value")),
                "unexpected_count": result.result.get("unexpected_count"),
                "element_count": result.result.get("element_count"),
                "details": _json(details),
                "action": (config_.meta or {}).get("action", "warn"),
                "_index": (config_.meta or {}).get("index", 0),
            }
        )
    # GX groups results by metric, not suite order; keep suite order for readers.
    rows.sort(key=lambda r: r.pop("_index"))
    return rows


def freshness_aggregates(rules: Sequence[FreshnessRule]) -> list[Column]:
    """Aggregate columns ``fresh_<i>_max`` (ISO text) and ``fresh_<i>_epoch`` (seconds) per rule."""
    columns = []
    for i, rule in enumerate(rules):
        newest = F.max(F.col(rule.column)).cast("timestamp")
        columns.append(F.date_format(newest, "yyyy-MM-dd'T'HH:mm:ss").alias(f"fresh_{i}_max"))
        columns.append(F.unix_timestamp(newest).alias(f"fresh_{i}_epoch"))
    return columns


def freshness_results(rules: Sequence[FreshnessRule], summary: dict[str, Any], run_date: dt.date) -> list[dict[str, Any]]:
    """Evaluate freshness rules from the aggregate row, in the GX result shape.

    A batch is fresh when its newest event is at most ``max_age_hours`` before the end
    of the run date (``run_date + 1 day`` 00:00 UTC); an empty batch is not fresh.
    """
    end = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
    rows = []
    for i, rule in enumerate(rules):
        epoch = summary.get(f"fresh_{i}_epoch")
        age_hours = None if epoch is None else (end.timestamp() - epoch) / 3600.0
        rows.append(
            {
                "expectation_type": FRESHNESS_TYPE,
                "column": rule.column,
                "kwargs": _json({"column": rule.column, "max_age_hours": rule.max_age_hours, "reference_time": end.isoformat()}),
                "success": age_hours is not None and age_hours <= rule.max_age_hours,
                "observed_value": _json(summary.get(f"fresh_{i}_max")),
                "unexpected_count": None,
                "element_count": None,
                "details": _json({"age_hours": None if age_hours is None else round(age_hours, 3)}),
                "action": rule.action,
            }
        )
    return rows
