"""Train a model from a training set with MLflow tracking and lineage, register it,
and promote it by rule (``registry.decide``).

Lineage logged on every run: the training set as an MLflow dataset input (table,
Delta version, rows), the git SHA, the estimator and its parameters, validation and
test metrics, the feature spec (features with their feature tables, join keys and
timestamp keys, also stored in the model's metadata for scoring), and the model
with its signature and input example in skops format.

Re-running for the same run date, model definition and training-set version finds
the version already registered and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from mlops_spark.config.settings import Settings
from mlops_spark.errors import SchemaMismatchError, UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.training import registry
from mlops_spark.training.model_io import FEATURE_SPEC_KEY, load_local_model, trusted_types_for
from mlops_spark.training.model_spec import CLASSIFIER_METRICS, ModelSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def training_set_table(settings: Settings, spec: ModelSpec) -> str:
    """``ml.training_set_<name>`` for a bare name, else the name as given."""
    return spec.training_set if "." in spec.training_set else settings.table("ml", f"training_set_{spec.training_set}")


def feature_table(settings: Settings, table: str) -> str:
    """A bare feature table name lives in the features database."""
    return table if "." in table else settings.table("features", table)


def feature_spec(settings: Settings, spec: ModelSpec, allow_nan: bool) -> dict[str, Any]:
    """The feature spec stored with the model: what scoring needs to look features up again."""
    return {
        "model_name": spec.name,
        "kind": spec.kind,
        "entity_keys": spec.entity_keys,
        "feature_names": spec.feature_names,
        "allow_nan": allow_nan,
        "lookups": [
            {"table": feature_table(settings, f.table), "join_keys": f.join_keys, "timestamp_key": f.timestamp_key, "columns": f.columns}
            for f in spec.features
        ],
    }


def git_sha() -> str | None:
    """The checkout's commit, or ``None`` outside a git work tree (e.g. an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def pip_requirements() -> list[str]:
    """Pinned requirements of a saved model, from the running environment.

    Given explicitly because MLflow's inference of them starts a subprocess that
    re-imports the model (seconds per training run).
    """
    from importlib.metadata import version

    return [f"{dist}=={version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas")]


def spec_hash(spec: ModelSpec) -> str:
    """A short digest of the model definition (part of the idempotency key)."""
    return hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def split_frame(pdf: pd.DataFrame, spec: ModelSpec) -> dict[str, pd.DataFrame]:
    """Split rows into train / validation / test.

    Uses ``spec.split.column`` when the frame has it; otherwise orders rows by the
    label timestamp (then entity keys, for ties) and takes the latest
    ``test_fraction`` as test and the ``validation_fraction`` before it as
    validation, so no model is validated on labels older than its training labels.

    Raises:
        UsageError: a split is empty or the split column holds an unknown value.
    """
    column = spec.split.column
    if column in pdf.columns:
        unknown = sorted(set(pdf[column].dropna().astype(str)) - set(SPLITS))
        if unknown or pdf[column].isna().any():
            raise UsageError(f"training set column {column}: values must be train/validation/test, found {unknown or ['null']}")
        parts = {name: pdf[pdf[column] == name] for name in SPLITS}
    else:
        ordered = pdf.sort_values([spec.label_timestamp, *spec.entity_keys], kind="mergesort").reset_index(drop=True)
        n = len(ordered)
        n_test = math.ceil(n * spec.split.test_fraction)
        n_val = math.ceil(n * spec.split.validation_fraction)
        parts = {
            "train": ordered.iloc[: n - n_test - n_val],
            "validation": ordered.iloc[n - n_test - n_val : n - n_test],
            "test": ordered.iloc[n - n_test :],
        }
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise UsageError(f"training set has no rows in split(s): {', '.join(empty)} ({len(pdf)} rows in all)")
    return parts


def feature_matrix(pdf: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Feature columns as float64 in model input order (nulls become NaN)."""
    return pdf[names].astype("float64")


def compute_metrics(
    kind: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray | None
) -> dict[str, float]:
    """Classifier: roc_auc, pr_auc, accuracy, f1, log_loss; regressor: rmse, mae, r2.

    Binary classifiers score the last class's probability; multiclass uses
    one-vs-rest ROC-AUC, macro PR-AUC and macro F1.
    """
    from sklearn import metrics as m
    from sklearn.preprocessing import label_binarize

    if kind != "classifier":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y_true, y_pred))),
            "mae": float(m.mean_absolute_error(y_true, y_pred)),
            "r2": float(m.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        }
    assert proba is not None and classes is not None
    out = {"accuracy": float(m.accuracy_score(y_true, y_pred))}
    binary = len(classes) == 2
    out["f1"] = float(m.f1_score(y_true, y_pred, average="binary" if binary else "macro", pos_label=classes[-1] if binary else 1))
    out["log_loss"] = float(m.log_loss(y_true, proba, labels=classes))
    if len(np.unique(y_true)) < 2:
        out["roc_auc"] = out["pr_auc"] = float("nan")
    elif binary:
        out["roc_auc"] = float(m.roc_auc_score(y_true, proba[:, 1]))
        out["pr_auc"] = float(m.average_precision_score(y_true == classes[-1], proba[:, 1]))
    else:
        out["roc_auc"] = float(m.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
        out["pr_auc"] = float(m.average_precision_score(label_binarize(y_true, classes=classes), proba, average="macro"))
    return {k: out[k] for k in CLASSIFIER_METRICS}


def evaluate(estimator: Any, kind: str, x: pd.DataFrame, y: pd.Series) -> tuple[dict[str, float], int]:
    """Metrics of a fitted estimator on (x, y) and the number of NaN predictions."""
    pred = np.asarray(estimator.predict(x))
    proba = np.asarray(estimator.predict_proba(x)) if kind == "classifier" else None
    nan_count = int(np.isnan(pred.astype("float64")).sum()) if pred.dtype.kind in "fc" else 0
    if proba is not None:
        nan_count += int(np.isnan(proba).any(axis=1).sum())
    if nan_count:
        return {}, nan_count
    return compute_metrics(kind, y.to_numpy(), pred, proba, getattr(estimator, "classes_", None)), 0


def training_dataset(df: DataFrame, table: str, version: int, label: str, rows: int) -> Any:
    """The training set as an MLflow dataset input (Delta table and version, schema, digest),
    profiled with its exact row count.

    MLflow profiles a Spark dataset with an approximate count that streams every row through
    a Python RDD (up to 5 s, and the job runs on after the answer); the step already holds
    the rows, so they are counted, not estimated.
    """
    from mlflow.data.spark_dataset import SparkDataset, from_spark

    class CountedSparkDataset(SparkDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"approx_count": rows}

    base = from_spark(df, table_name=table, version=str(version), targets=label, name=table)
    return CountedSparkDataset(df=df, source=base.source, targets=label, name=table, digest=base.digest)


def check_training_columns(df: DataFrame, spec: ModelSpec, table: str) -> None:
    """Fail before fitting when the training set lacks a column the definition needs.

    Raises:
        SchemaMismatchError: naming the table and the missing columns.
    """
    needed = [*spec.entity_keys, spec.label, *spec.feature_names]
    if spec.split.column not in df.columns:
        needed.append(spec.label_timestamp)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{table}: missing column(s) needed by model {spec.name}: {', '.join(missing)}")


def select_training_set(
    spark: SparkSession, settings: Settings, df: DataFrame, table: str, version: int, set_id: str | None
) -> tuple[DataFrame, str | None]:
    """The rows of one built training set of a table that holds several.

    ``ml.training_set_<name>`` keeps every set built (one per definition and input
    versions, column ``training_set_id``). Without ``set_id`` the newest set (by
    ``created_at`` in ``ml.training_sets``) present in this version of the table is used.

    Raises:
        UsageError: ``set_id`` is not in the table, or the table holds several sets and
            ``ml.training_sets`` does not say which is newest.
    """
    from pyspark.sql import functions as F

    from mlops_spark.training.training_set import ID_COL

    if ID_COL not in df.columns:
        if set_id:
            raise UsageError(f"{table}@v{version} has no {ID_COL} column: --training-set-id {set_id} cannot be selected")
        return df, None
    present = sorted(r[0] for r in df.select(ID_COL).distinct().collect() if r[0] is not None)
    if set_id is None:
        if len(present) <= 1:
            return df, present[0] if present else None
        registry_table = settings.table("ml", "training_sets")
        newest = None
        if delta.table_exists(spark, registry_table):
            newest = (
                spark.table(registry_table)
                .where(F.col(ID_COL).isin(present))
                .orderBy(F.col("created_at").desc(), F.col(ID_COL).desc())
                .select(ID_COL)
                .first()
            )
        if newest is None:
            raise UsageError(
                f"{table}@v{version} holds {len(present)} training sets and {registry_table} does not say which is newest:"
                " give --training-set-id"
            )
        set_id = newest[0]
    elif set_id not in present:
        raise UsageError(f"training set {set_id} is not in {table}@v{version} (sets there: {', '.join(present) or 'none'})")
    log.info("training set selected", extra=fields(table=table, version=version, training_set_id=set_id, sets_in_table=len(present)))
    return df.where(F.col(ID_COL) == set_id), set_id


@dataclass(frozen=True)
class TrainResult:
    """What :func:`run` did: the registered version, its run and the promotion decision."""

    model_name: str
    version: int
    run_id: str
    decision: registry.Decision
    metrics: dict[str, float]
    reused: bool


def _existing_version(client: Any, spec: ModelSpec, key: dict[str, str]) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{spec.name}'")
    except MlflowException:
        return None
    for mv in versions:
        if all(mv.tags.get(k) == v for k, v in key.items()):
            return mv
    return None


def _decision_from_tags(spec: ModelSpec, mv: Any) -> registry.Decision:
    tags = {k.removeprefix("decision."): v for k, v in mv.tags.items() if k.startswith("decision.")}

    def num(key: str, cast: type = float) -> Any:
        value = tags.get(key)
        return cast(value) if value not in (None, "None") else None

    return registry.Decision(
        model_name=spec.name,
        version=int(mv.version),
        action=tags.get("action", "promotion"),
        outcome=tags.get("outcome", "unknown"),
        reason=tags.get("reason", ""),
        metric=tags.get("metric"),
        candidate_metric=num("candidate_metric"),
        champion_version=num("champion_version", int),
        champion_metric=num("champion_metric"),
        threshold=num("threshold"),
        relative_improvement=num("relative_improvement"),
        run_id=mv.run_id,
        training_set=tags.get("training_set"),
        training_set_version=num("training_set_version", int),
    )


def _champion_metric(client: Any, spec: ModelSpec, test: pd.DataFrame) -> tuple[int | None, float | None, str | None]:
    """Evaluate the current champion on the candidate's test split (same rows)."""
    import mlflow

    version = registry.champion_version(client, spec.name)
    if version is None:
        return None, None, None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{spec.name}/{version}", dst_path=tmp)
        champion = load_local_model(path)
    missing = [c for c in champion.input_columns if c not in test.columns]
    if missing:
        return version, None, f"champion version {version} not comparable (training set lacks {', '.join(missing)})"
    metrics, nan_count = evaluate(champion.estimator, spec.kind, feature_matrix(test, champion.input_columns), test[spec.label])
    if nan_count:
        return version, None, f"champion version {version} predicts NaN on the test split"
    return version, metrics[spec.promotion.metric], None


def run(
    spark: SparkSession,
    settings: Settings,
    spec: ModelSpec,
    run_date: dt.date,
    training_set_version: int | None = None,
    training_set_id: str | None = None,
) -> TrainResult:
    """Train, log, register and promote one model definition.

    Reads ``ml.training_set_<name>`` (at ``training_set_version``, else the latest;
    the set ``training_set_id``, else the newest built set: :func:`select_training_set`),
    fits ``spec.estimator`` on the train split, logs metrics of the validation and
    test splits, registers a version with alias ``challenger`` and applies the
    promotion rule against ``@champion`` on the same test rows.

    Raises:
        UsageError: the training set table does not exist or a split is empty.
        SchemaMismatchError: the training set lacks a needed column.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.utils import get_tags

    table = training_set_table(settings, spec)
    if not delta.table_exists(spark, table):
        raise UsageError(f"training set table {table} does not exist (build it with `mlops-spark training-set`)")
    version = delta.current_version(spark, table) if training_set_version is None else int(training_set_version)
    df = delta.read_version(spark, table, version)
    df, set_id = select_training_set(spark, settings, df, table, version, training_set_id)
    check_training_columns(df, spec, table)

    experiment_id = registry.configure_mlflow(settings)
    client = mlflow.MlflowClient()
    key = {
        "mlops.spec_hash": spec_hash(spec),
        "mlops.training_set": table,
        "mlops.training_set_version": str(version),
        **({"mlops.training_set_id": set_id} if set_id else {}),
        "mlops.run_date": run_date.isoformat(),
    }
    existing = _existing_version(client, spec, key)
    if existing is not None:
        log.info(
            "model already trained for this run date and training set; nothing to do",
            extra=fields(model=spec.name, version=existing.version),
        )
        run_metrics = client.get_run(existing.run_id).data.metrics
        return TrainResult(spec.name, int(existing.version), existing.run_id, _decision_from_tags(spec, existing), run_metrics, True)

    keep = [
        c
        for c in dict.fromkeys([*spec.entity_keys, spec.label, spec.label_timestamp, spec.split.column, *spec.feature_names])
        if c in df.columns
    ]
    pdf = df.select(*keep).toPandas()
    parts = split_frame(pdf, spec)
    estimator = spec.build_estimator()
    allow_nan = bool(get_tags(estimator).input_tags.allow_nan)
    train = parts["train"]
    dropped = 0
    if not allow_nan:
        # Estimators that reject NaN cannot fit rows with missing features; count them, never hide them.
        complete = train[spec.feature_names].notna().all(axis=1)
        dropped = int((~complete).sum())
        train = train[complete]
    x_train, y_train = feature_matrix(train, spec.feature_names), train[spec.label]

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}-{run_date.isoformat()}") as active:
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                **key,
                "mlops.model": spec.name,
                "estimator": spec.estimator.class_path,
                "git_sha": git_sha() or "unknown",
                "feature_spec": json.dumps(feature_spec(settings, spec, allow_nan)),
            }
        )
        mlflow.log_params(
            {
                "estimator": spec.estimator.class_path,
                **{f"param.{k}": v for k, v in spec.estimator.params.items()},
                "training_set": table,
                "training_set_version": version,
                "label": spec.label,
            }
        )
        mlflow.log_input(training_dataset(df, table, version, spec.label, len(pdf)), context="training")
        mlflow.log_metrics(
            {"rows_total": len(pdf), **{f"rows_{n}": len(p) for n, p in parts.items()}, "train_rows_dropped_missing_features": dropped}
        )

        estimator.fit(x_train, y_train)
        metrics: dict[str, float] = {}
        nan_test = 0
        for split in ("validation", "test"):
            part = parts[split]
            values, nan_count = evaluate(estimator, spec.kind, feature_matrix(part, spec.feature_names), part[spec.label])
            nan_test = nan_count if split == "test" else nan_test
            metrics.update({f"{split}_{k}": v for k, v in values.items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
        mlflow.log_dict(feature_spec(settings, spec, allow_nan), "feature_spec.json")

        signature = infer_signature(x_train.head(100), estimator.predict(x_train.head(100)))
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=x_train.head(5),
            registered_model_name=spec.name,
            serialization_format="skops",
            skops_trusted_types=trusted_types_for(estimator),
            metadata={FEATURE_SPEC_KEY: json.dumps(feature_spec(settings, spec, allow_nan))},
            pip_requirements=pip_requirements(),
        )
    new_version = int(info.registered_model_version)
    for k, v in key.items():
        client.set_model_version_tag(spec.name, str(new_version), k, v)
    if spec.description:
        client.update_model_version(spec.name, str(new_version), description=spec.description)
    client.set_registered_model_alias(spec.name, registry.CHALLENGER, str(new_version))

    decision = _promote(client, spec, parts["test"], metrics, new_version, run_id, table, version, len(x_train), nan_test)
    registry.tag_decision(client, decision)
    registry.record_decision(spark, settings, decision, run_date)
    log.info("trained", extra=fields(model=spec.name, version=new_version, run_id=run_id, outcome=decision.outcome, reason=decision.reason))
    return TrainResult(spec.name, new_version, run_id, decision, metrics, False)


def _promote(
    client: Any,
    spec: ModelSpec,
    test: pd.DataFrame,
    metrics: dict[str, float],
    version: int,
    run_id: str,
    table: str,
    table_version: int,
    train_rows: int,
    nan_test: int,
) -> registry.Decision:
    metric = spec.promotion.metric
    candidate = metrics.get(f"test_{metric}", float("nan"))
    champ_version, champ_metric, note = _champion_metric(client, spec, test)
    promote, reason, gain = registry.decide(
        candidate,
        champ_metric,
        higher_is_better=spec.metric_higher_is_better(),
        threshold=spec.promotion.min_relative_improvement,
        training_rows=train_rows,
        min_rows=spec.promotion.min_rows,
        nan_predictions=nan_test,
        metric_floor=spec.promotion.metric_floor,
    )
    if note and promote:
        reason = f"{note}: promoted on guards alone"
    if promote:
        client.set_registered_model_alias(spec.name, registry.CHAMPION, str(version))
    return registry.Decision(
        model_name=spec.name,
        version=version,
        action="promotion",
        outcome="promoted" if promote else "rejected",
        reason=reason,
        metric=metric,
        candidate_metric=None if math.isnan(candidate) else candidate,
        champion_version=champ_version,
        champion_metric=champ_metric,
        threshold=spec.promotion.min_relative_improvement,
        relative_improvement=gain,
        run_id=run_id,
        training_set=table,
        training_set_version=table_version,
    )
