"""Model registry: MLflow set-up, aliases, the promotion rule, decisions and rollback.

A new version always gets the alias ``challenger``; it takes ``champion`` only when
:func:`decide` says so. Every decision is written twice: as tags on the registry
version (``decision.*``) and as a row of ``ml.model_decisions``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import ModelNotFoundError, UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

DECISIONS_SCHEMA = T.StructType(
    [
        T.StructField("model_name", T.StringType(), False, {"comment": "registered model"}),
        T.StructField("version", T.IntegerType(), False, {"comment": "version the decision is about"}),
        T.StructField("action", T.StringType(), False, {"comment": "promotion or rollback"}),
        T.StructField("outcome", T.StringType(), False, {"comment": "promoted, rejected or rolled_back"}),
        T.StructField("reason", T.StringType(), False, {"comment": "why, in one sentence"}),
        T.StructField("metric", T.StringType(), True, {"comment": "test-split metric compared"}),
        T.StructField("candidate_metric", T.DoubleType(), True, {"comment": "metric of this version"}),
        T.StructField("champion_version", T.IntegerType(), True, {"comment": "champion before the decision"}),
        T.StructField("champion_metric", T.DoubleType(), True, {"comment": "metric of that champion on the same split"}),
        T.StructField("threshold", T.DoubleType(), True, {"comment": "required relative improvement"}),
        T.StructField("relative_improvement", T.DoubleType(), True, {"comment": "achieved relative improvement"}),
        T.StructField("run_id", T.StringType(), True, {"comment": "MLflow run of this version"}),
        T.StructField("training_set", T.StringType(), True, {"comment": "training set table"}),
        T.StructField("training_set_version", T.LongType(), True, {"comment": "its Delta version"}),
        T.StructField("decided_at", T.TimestampType(), False, {"comment": "when the decision was made (UTC)"}),
        T.StructField("run_date", T.DateType(), False, {"comment": "logical date of the run"}),
    ]
)


def is_remote_tracking(uri: str) -> bool:
    """True for tracking servers (``http(s)://``, ``databricks``) that choose artifact locations themselves."""
    return urlparse(uri).scheme in ("http", "https", "databricks", "databricks-uc")


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured tracking and registry URIs and make sure the
    experiment exists; returns its id.

    The embedded default (SQLite) gets the lake's artifact folder; a tracking server
    keeps its own artifact root.
    """
    # MLflow draws a progress bar per artifact download: noise in a batch job's log
    # (a user who wants it sets the variable to true).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    ml = settings.mlflow
    tracking_uri = str(ml.tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(str(ml.registry_uri))
    experiment = mlflow.get_experiment_by_name(ml.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None if is_remote_tracking(tracking_uri) else str(ml.artifact_root)
    return str(mlflow.create_experiment(ml.experiment, artifact_location=location))


def parse_model_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``name@alias`` -> (name, alias, None); ``name/3`` or ``name:3`` -> (name, None, 3); ``name`` -> champion.

    Raises:
        UsageError: the reference is empty or the version is not a number.
    """
    ref = ref.strip().removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref or ":" in ref:
        name, _, version = ref.replace(":", "/").partition("/")
        if name and version.isdigit():
            return name, None, int(version)
    elif ref:
        return ref, CHAMPION, None
    raise UsageError(f"model reference '{ref}' is not NAME, NAME@ALIAS or NAME/VERSION")


def resolve_version(client: object, name: str, alias: str | None, version: int | None) -> object:
    """The registry ``ModelVersion`` a reference points to.

    Raises:
        ModelNotFoundError: no such model, alias or version (one line naming it).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)  # type: ignore[attr-defined]
    except MlflowException:
        raise ModelNotFoundError(f"registered model '{name}' does not exist") from None
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)  # type: ignore[attr-defined]
        return client.get_model_version(name, str(version))  # type: ignore[attr-defined]
    except MlflowException:
        what = f"alias '@{alias}'" if alias is not None else f"version {version}"
        raise ModelNotFoundError(f"model '{name}' has no {what}") from None


def champion_version(client: object, name: str) -> int | None:
    """The version holding ``@champion``, or ``None`` (no model or no champion yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)  # type: ignore[attr-defined]
    except MlflowException:
        return None


@dataclass(frozen=True)
class Decision:
    """The outcome of comparing a candidate version with the champion (see :data:`DECISIONS_SCHEMA`)."""

    model_name: str
    version: int
    action: str
    outcome: str
    reason: str
    metric: str | None = None
    candidate_metric: float | None = None
    champion_version: int | None = None
    champion_metric: float | None = None
    threshold: float | None = None
    relative_improvement: float | None = None
    run_id: str | None = None
    training_set: str | None = None
    training_set_version: int | None = None


def relative_improvement(candidate: float, champion: float, higher_is_better: bool) -> float:
    """(candidate - champion) / |champion|, sign flipped for lower-is-better metrics; inf when champion is 0."""
    gain = candidate - champion if higher_is_better else champion - candidate
    if champion == 0:
        return math.inf if gain > 0 else (0.0 if gain == 0 else -math.inf)
    return gain / abs(champion)


def decide(
    candidate_metric: float,
    champion_metric: float | None,
    *,
    higher_is_better: bool,
    threshold: float,
    training_rows: int,
    min_rows: int,
    nan_predictions: int,
    metric_floor: float | None,
) -> tuple[bool, str, float | None]:
    """Apply the promotion rule. Guards first, then the improvement over the champion.

    Returns:
        (promote, reason, relative improvement or ``None`` without a champion).
    """
    if training_rows < min_rows:
        return False, f"guard failed: {training_rows} training rows < minimum {min_rows}", None
    if nan_predictions:
        return False, f"guard failed: {nan_predictions} NaN predictions on the test split", None
    if candidate_metric is None or math.isnan(candidate_metric):
        return False, "guard failed: metric is NaN", None
    if metric_floor is not None:
        bad = candidate_metric < metric_floor if higher_is_better else candidate_metric > metric_floor
        if bad:
            side = "below the floor" if higher_is_better else "above the ceiling"
            return False, f"guard failed: metric {candidate_metric:.6g} {side} {metric_floor:.6g}", None
    if champion_metric is None or math.isnan(champion_metric):
        return True, "no comparable champion: first model becomes champion", None
    gain = relative_improvement(candidate_metric, champion_metric, higher_is_better)
    # A float tolerance, so an improvement of exactly the threshold (0.816 vs 0.8 at 2%) promotes.
    if gain >= threshold - 1e-12:
        return True, f"metric improved by {gain:.2%} >= required {threshold:.2%}", gain
    return False, f"metric improved by {gain:.2%} < required {threshold:.2%}", gain


def tag_decision(client: object, decision: Decision) -> None:
    """Write the decision as ``decision.*`` tags on the registry version."""
    for key, value in asdict(decision).items():
        if value is not None and key not in ("model_name", "version"):
            client.set_model_version_tag(decision.model_name, str(decision.version), f"decision.{key}", str(value))  # type: ignore[attr-defined]


def decision_frame(spark: SparkSession, decision: Decision, run_date: dt.date, decided_at: dt.datetime) -> DataFrame:
    """One ``ml.model_decisions`` row."""
    row = {**asdict(decision), "decided_at": decided_at.replace(tzinfo=None), "run_date": run_date}
    for key in ("candidate_metric", "champion_metric", "threshold", "relative_improvement"):
        if row[key] is not None:
            row[key] = float(row[key])
    return spark.createDataFrame([row], DECISIONS_SCHEMA).select(*DECISIONS_SCHEMA.fieldNames())


def record_decision(spark: SparkSession, settings: Settings, decision: Decision, run_date: dt.date) -> None:
    """Upsert the decision into ``ml.model_decisions`` keyed by (model, version, action, run_date)."""
    table = settings.table("ml", "model_decisions")
    delta.create_table(spark, table, DECISIONS_SCHEMA, comment="Promotion and rollback decisions of registered models")
    row = decision_frame(spark, decision, run_date, dt.datetime.now(dt.timezone.utc))
    delta.merge_upsert(spark, row, table, keys=["model_name", "version", "action", "run_date"])


def rollback(spark: SparkSession, settings: Settings, client: object, name: str, to_version: int, run_date: dt.date) -> Decision:
    """Move ``@champion`` of ``name`` to ``to_version`` and record it.

    Re-running is a no-op when the version already holds ``@champion``.

    Raises:
        ModelNotFoundError: the model or version does not exist.
    """
    target = resolve_version(client, name, None, to_version)
    before = champion_version(client, name)
    if before == to_version:
        log.info("rollback: already champion", extra=fields(model=name, version=to_version))
        reason = "already champion; nothing changed"
    else:
        client.set_registered_model_alias(name, CHAMPION, str(to_version))  # type: ignore[attr-defined]
        reason = f"manual rollback from version {before} to version {to_version}"
    decision = Decision(
        model_name=name,
        version=to_version,
        action="rollback",
        outcome="rolled_back",
        reason=reason,
        champion_version=before,
        run_id=getattr(target, "run_id", None),
    )
    if before != to_version:
        tag_decision(client, decision)
        record_decision(spark, settings, decision, run_date)
    log.info("rollback", extra=fields(model=name, version=to_version, previous=before))
    return decision
