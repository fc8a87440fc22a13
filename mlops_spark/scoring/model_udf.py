"""The model as an Arrow iterator UDF (``mapInArrow``): the pattern of
``mlflow.pyfunc.spark_udf`` without its generality.

What makes it fast:

* the model's skops bytes travel once per executor as a broadcast and are loaded
  once per Python worker (cached in this module, reused across tasks);
* Arrow batches go straight to a float64 NumPy matrix, no pandas frame and no
  per-batch schema enforcement;
* each worker limits OpenMP/BLAS to ``threads`` (default 1): Spark already runs
  one task per core, and 2 workers x 2 OpenMP threads on 2 cores only thrash;
* classifiers call ``predict_proba`` once and derive the class from it, so the
  trees are walked once per row, not twice.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from mlops_spark.training.model_io import TRUSTED_TYPES

# One loaded model per (model key) per Python worker process.
_LOADED: dict[str, Any] = {}

PREDICTION = "prediction"
PROBABILITY = "probability"


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to score: the model bytes and how to read a batch.

    Attributes:
        key: unique model key (``name/version/run_id``) for the per-worker cache.
        feature_names: model input columns, in order.
        kind: ``classifier`` or ``regressor``.
        threads: OpenMP/BLAS threads per Python worker.
    """

    key: str
    feature_names: tuple[str, ...]
    kind: str
    threads: int = 1


def _load(key: str, payload: bytes, threads: int) -> Any:
    model = _LOADED.get(key)
    if model is None:
        import skops.io as sio
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
        model = sio.loads(payload, trusted=list(TRUSTED_TYPES))
        _LOADED.clear()  # one model per worker: a new version replaces the old one
        _LOADED[key] = model
    return model


def predict_arrays(model: Any, kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Prediction (float64) and, for classifiers, the probability of the positive
    class (binary) or of the predicted class (multiclass)."""
    if kind != "classifier":
        return np.asarray(model.predict(x), dtype="float64"), None
    proba = np.asarray(model.predict_proba(x))
    best = proba.argmax(axis=1)
    prediction = np.asarray(model.classes_)[best].astype("float64")
    probability = proba[:, 1] if proba.shape[1] == 2 else proba[np.arange(len(best)), best]
    return prediction, probability.astype("float64")


def make_scorer(spec: ScorerSpec, payload: Any, passthrough: list[str]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: passthrough columns + ``prediction`` + ``probability``.

    Args:
        spec: see :class:`ScorerSpec`.
        payload: a Spark broadcast of the model's skops bytes.
        passthrough: columns copied unchanged (entity keys).
    """
    features = list(spec.feature_names)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = _load(spec.key, payload.value, spec.threads)
        with warnings.catch_warnings():
            # The model was fitted on a named frame; the matrix below has the same column order.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                x = np.column_stack([batch.column(name).to_numpy(zero_copy_only=False) for name in features]).astype("float64", copy=False)
                prediction, probability = predict_arrays(model, spec.kind, x)
                prob = pa.array(probability, type=pa.float64()) if probability is not None else pa.nulls(batch.num_rows, pa.float64())
                arrays = [batch.column(name) for name in passthrough] + [pa.array(prediction, type=pa.float64()), prob]
                yield pa.RecordBatch.from_arrays(arrays, names=[*passthrough, PREDICTION, PROBABILITY])

    return score


def score_frame(df: DataFrame, spec: ScorerSpec, payload: Any, passthrough: list[str]) -> DataFrame:
    """Score ``df`` (passthrough columns + float64 feature columns) with the model.

    Returns:
        passthrough columns, ``prediction`` double, ``probability`` double (null for regressors).
    """
    out_schema = T.StructType(
        [df.schema[name] for name in passthrough]
        + [T.StructField(PREDICTION, T.DoubleType(), True), T.StructField(PROBABILITY, T.DoubleType(), True)]
    )
    inputs = df.select(*passthrough, *spec.feature_names)
    return inputs.mapInArrow(make_scorer(spec, payload, passthrough), out_schema).select(*out_schema.fieldNames())
