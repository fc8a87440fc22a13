"""``score`` step: resolve a model by alias, check schemas, look up features as of
the scoring time, score with ``mlflow.pyfunc.spark_udf`` (see :mod:`.model_udf`) and
write ``ml.predictions_<model>`` (and ``ml.scoring_rejects``), replacing the run date's rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import UsageError
from mlops_spark.log import fields
from mlops_spark.scoring import score as S
from mlops_spark.scoring.model_udf import ScorerSpec, save_scoring_model, score_frame, scoring_udf
from mlops_spark.spark import delta
from mlops_spark.spark.session import ARROW_BATCH_ROWS, runtime_conf
from mlops_spark.training import registry
from mlops_spark.training.model_io import LocalModel, load_local_model

log = logging.getLogger(__name__)

# Spark 4.2 feeds a pandas UDF the scan's column batches directly when this is true (its
# default). That path is built for Arrow-backed sources: over Parquet it copies each input
# row into a generic row for the pass-through queue and calls the model per reader batch
# (4,096 rows) whatever maxRecordsPerBatch says. Off, the UDF gets maxRecordsPerBatch rows
# through the code-generated row path: 2M rows scored Delta to Delta, the JVM's CPU
# 10.7-11.2 s -> 8.9 s and the wall 9.1-9.3 s -> 8.1-8.3 s (warm, two runs each).
COLUMNAR_UDF_INPUT = "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"


@dataclass(frozen=True)
class ScoreResult:
    """Counts and identity of one scoring run: ``rows_in == rows_scored + rows_rejected``."""

    model_name: str
    version: int
    run_id: str
    table: str
    rows_in: int
    rows_scored: int
    rows_rejected: int


@dataclass(frozen=True)
class ResolvedModel:
    """A registry version downloaded to ``path`` and loaded on the driver."""

    name: str
    version: int
    run_id: str
    model: LocalModel
    path: Path


def resolve_model(settings: Settings, model_ref: str, dst: Path) -> ResolvedModel:
    """Resolve ``NAME@ALIAS`` / ``NAME/VERSION``, download it into ``dst`` and load it safely on the driver.

    Raises:
        ModelNotFoundError: unknown model, alias or version; or a model not in skops format.
        UsageError: a malformed reference.
    """
    import mlflow

    name, alias, version = registry.parse_model_ref(model_ref)
    registry.configure_mlflow(settings)
    mv: Any = registry.resolve_version(mlflow.MlflowClient(), name, alias, version)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dst)))
    return ResolvedModel(name, int(mv.version), str(mv.run_id), load_local_model(path), path)


def read_entities(spark: SparkSession, entities: str | DataFrame) -> tuple[DataFrame, str]:
    """A table name (``db.table``) or a Parquet path; returns the frame and a label for messages.

    Raises:
        UsageError: the table or path does not exist.
    """
    if isinstance(entities, DataFrame):
        return entities, "entities"
    if "/" in entities or entities.endswith(".parquet"):
        try:
            return spark.read.parquet(entities), entities
        except Exception as exc:  # AnalysisException: PATH_NOT_FOUND and friends
            raise UsageError(f"entities {entities}: cannot read Parquet: {str(exc).splitlines()[0]}") from None
    if not delta.table_exists(spark, entities):
        raise UsageError(f"entities table {entities} does not exist")
    return spark.table(entities), entities


def _feature_frames(spark: SparkSession, spec: dict, entities: DataFrame) -> list[tuple[S.Lookup, DataFrame]]:
    """Each lookup's table, checked against the model signature before any work."""
    out = []
    for item in spec.get("lookups", []):
        lookup = S.Lookup.from_spec(item)
        if all(c in entities.columns for c in lookup.columns):
            continue
        if not delta.table_exists(spark, lookup.table):
            raise UsageError(f"feature table {lookup.table} does not exist")
        frame = spark.table(lookup.table)
        S.check_lookup_schema(frame.schema, lookup, f"feature table {lookup.table}")
        missing_keys = [k for k in lookup.join_keys if k not in entities.columns]
        if missing_keys:
            raise UsageError(f"entities lack join key(s) {', '.join(missing_keys)} of feature table {lookup.table}")
        out.append((lookup, frame))
    return out


def run(
    spark: SparkSession,
    settings: Settings,
    model_ref: str,
    entities: str | DataFrame,
    run_date: dt.date,
    as_of: dt.datetime | None = None,
    threads_per_worker: int = 1,
    arrow_batch_size: int = 50_000,
) -> ScoreResult:
    """Score entities with a registered model into ``ml.predictions_<model>``.

    Args:
        model_ref: ``NAME@ALIAS`` (``churn@champion``) or ``NAME/VERSION``.
        entities: a table name, a Parquet path or a DataFrame with the entity keys
            (and optionally feature columns, used as given).
        run_date: the run's logical date; its rows are replaced on re-runs.
        as_of: feature lookup time; default now (UTC).

    Raises:
        ModelNotFoundError: unknown model, alias or version.
        SchemaMismatchError: entities or a feature table do not fit the model signature.
        UsageError: entities or a feature table do not exist.
    """
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    as_of = (as_of or scored_at).replace(tzinfo=None)
    with tempfile.TemporaryDirectory(prefix="mlops-score-") as tmp:
        resolved = resolve_model(settings, model_ref, Path(tmp) / "registered")
        spec = resolved.model.feature_spec
        keys = list(spec["entity_keys"])
        feature_names = list(resolved.model.input_columns)
        frame, label = read_entities(spark, entities)
        provided = [c for c in feature_names if c in frame.columns]
        S.check_entities_schema(frame.schema, keys, provided, label)
        lookups = _feature_frames(spark, spec, frame)
        frame = frame.select(*dict.fromkeys([*keys, *[k for lk, _ in lookups for k in lk.join_keys], *provided]))

        enriched = S.lookup_features(frame, lookups, as_of, feature_names)
        scorable, rejected = S.split_missing(enriched, feature_names, bool(spec.get("allow_nan", False)))
        key = f"{resolved.name}/{resolved.version}/{resolved.run_id}"
        scorer = ScorerSpec(key, tuple(feature_names), spec["kind"], threads_per_worker, positional_input=True)
        udf = scoring_udf(spark, save_scoring_model(resolved.path, scorer, Path(tmp)), scorer.kind)
        table = settings.table("ml", f"predictions_{resolved.name}")
        with runtime_conf(spark, ARROW_BATCH_ROWS, str(arrow_batch_size)), runtime_conf(spark, COLUMNAR_UDF_INPUT, "false"):
            scored = score_frame(scorable, udf, scorer, keys)
            out = S.prediction_columns(scored, keys, resolved.name, resolved.version, resolved.run_id, scored_at, run_date)
            _ensure_predictions_table(spark, table, out.schema, keys, resolved.name)
            # Every row's run_date is the literal of the condition: Delta's per-row check of it is
            # redundant, and each task writes one partition, so sorting its rows by run_date is too
            # (2M rows alternated 3 warm rounds: 10.4-10.8 s against 11.1-11.2 s, 1-2 CPU s less).
            with runtime_conf(spark, delta.OPEN_FILES_PER_TASK, "1"):
                delta.overwrite_where(out, table, delta.col_eq("run_date", run_date.isoformat()), check_rows=False)
            rows_scored = delta.last_commit(spark, table)[1]
    rows_rejected = _write_rejects(spark, settings, rejected, keys, resolved, scored_at, run_date)
    result = ScoreResult(resolved.name, resolved.version, resolved.run_id, table, rows_scored + rows_rejected, rows_scored, rows_rejected)
    log.info("scored", extra=fields(**result.__dict__, as_of=as_of.isoformat(), run_date=run_date.isoformat()))
    return result


# Columns of ml.predictions_<model> with Delta file statistics: what analysts filter on.
# model_name is the same on every row of the table, and a run_id selects the files that its
# model_version selects; their string min/max (Delta copies and compares the strings of
# every row it writes: about a twentieth of the scoring write's JVM time) add no skipping.
PREDICTION_STATS_COLUMNS = ("prediction", "probability", "model_version", "scored_at")


def _ensure_predictions_table(spark: SparkSession, table: str, schema: T.StructType, keys: list[str], model: str) -> None:
    """Create ``ml.predictions_<model>`` (partitioned by run_date, statistics on the entity
    keys and :data:`PREDICTION_STATS_COLUMNS`) unless it exists; an existing table keeps its properties."""
    stats = ",".join(delta.quote_column(c) for c in [*keys, *PREDICTION_STATS_COLUMNS])
    delta.create_table(
        spark, table, schema, partition_by=["run_date"], comment=f"Predictions of model {model}",
        properties={"delta.dataSkippingStatsColumns": stats},
    )  # fmt: skip


def _write_rejects(
    spark: SparkSession,
    settings: Settings,
    rejected: DataFrame | None,
    keys: list[str],
    m: ResolvedModel,
    scored_at: dt.datetime,
    run_date: dt.date,
) -> int:
    """Replace the run date's rejects of this model (also when there are none now).

    A model that scores every row (``rejected is None``) only deletes what an earlier
    version may have left for the date: no write job and, when nothing matches, no commit.
    """
    table = settings.table("ml", "scoring_rejects")
    condition = f"{delta.col_eq('run_date', run_date.isoformat())} AND {delta.col_eq('model_name', m.name)}"
    if delta.table_exists(spark, table):
        if rejected is None:
            DeltaTable.forName(spark, table).delete(condition)
            return 0
    else:
        comment = "Entities a model could not score, with the reason"
        delta.create_table(spark, table, S.REJECTS_SCHEMA, partition_by=["run_date"], comment=comment)
        if rejected is None:
            return 0
    rows = S.reject_columns(rejected, keys, m.name, m.version, m.run_id, scored_at, run_date)
    delta.overwrite_where(rows, table, condition)
    return delta.last_commit(spark, table)[1]
