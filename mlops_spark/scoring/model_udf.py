"""The model as ``mlflow.pyfunc.spark_udf``, loaded safely and tuned for batch scoring.

The registered model is a scikit-learn model in skops format. MLflow's own sklearn
loader would trust the types listed in the model's ``MLmodel`` file, so scoring does
not hand ``models:/...`` to ``spark_udf``. Instead the driver wraps the downloaded
model in a pyfunc model whose ``loader_module`` is this module: workers load it with
:func:`_load_pyfunc`, which goes through :func:`~mlops_spark.training.model_io.load_local_model`
(the project's trusted-types list, never pickle). Nothing is cloudpickled; the wrapper
holds the model files and a small JSON of what a worker needs.

What makes it fast:

* one model per Python worker: :func:`_load_pyfunc` caches the estimator per process
  by model key, so the per-task ``load_model`` of ``spark_udf`` in local mode (and
  its per-archive cache on a cluster) costs a YAML read, not a model load;
* each worker limits OpenMP/BLAS to ``threads`` (default 1): Spark already runs one
  task per core, and 2 workers x 2 OpenMP threads on 2 cores only thrash;
* no per-batch schema work: the wrapper has no input signature (the pipeline checks
  and casts the features to double before the UDF) and the result is a struct of doubles;
* the pipeline passes the features as the UDF's arguments, one double column each, in
  the model's order (``positional_input``; ``spark_udf`` names them ``0``, ``1``, ...). A
  struct argument makes the JVM build and copy a nested row of boxed values for every row
  before its Arrow conversion: 13% of the JVM's samples in the scoring benchmark;
* classifiers call ``predict_proba`` once and derive the class from it, so the
  trees are walked once per row, not twice;
* HistGradientBoosting models with numeric features walk their trees over binned
  features (:mod:`.fast_predict`: identical results, about a quarter less CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.scoring.fast_predict import Predictor

# One loaded scorer per (model key) per Python worker process.
_LOADED: dict[str, ScoringModel] = {}

PREDICTION = "prediction"
PROBABILITY = "probability"
SCORER_FILE = "scorer.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to score.

    Attributes:
        key: unique model key (``name/version/run_id``) for the per-worker cache.
        feature_names: model input columns, in order.
        kind: ``classifier`` or ``regressor``.
        threads: OpenMP/BLAS threads per Python worker.
        positional_input: the features arrive as the UDF's arguments, in ``feature_names``
            order (see :func:`score_frame`), not as one struct of named fields.
    """

    key: str
    feature_names: tuple[str, ...]
    kind: str
    threads: int = 1
    positional_input: bool = False


class ScoringModel:
    """The pyfunc implementation :func:`_load_pyfunc` returns: a pandas frame of the
    features in, a frame of ``prediction`` (+ ``probability`` for classifiers) out."""

    def __init__(self, estimator: Any, spec: ScorerSpec) -> None:
        self.estimator = estimator
        self.spec = spec
        self._features = list(spec.feature_names)
        self._predict = Predictor(estimator, spec.kind)

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Score a batch: ``model_input`` carries every feature column by name or, with
        ``spec.positional_input``, exactly the features in the model's order (``spark_udf``
        names its arguments ``0``, ``1``, ...)."""
        frame = model_input if self.spec.positional_input else model_input[self._features]
        x = frame.to_numpy(dtype="float64", na_value=np.nan)
        with warnings.catch_warnings():
            # The model was fitted on a named frame; the matrix has the same column order.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            prediction, probability = self._predict(x)
        out = {PREDICTION: prediction}
        if probability is not None:
            out[PROBABILITY] = probability
        return pd.DataFrame(out, copy=False)


def _load_pyfunc(data_path: str) -> ScoringModel:
    """MLflow's ``loader_module`` entry point, run in each Python worker (and cached there).

    Raises:
        ModelNotFoundError: the wrapped model is not skops or trusts types off the allow-list.
    """
    meta = json.loads((Path(data_path) / SCORER_FILE).read_text())
    positional = bool(meta.get("positional_input", False))
    spec = ScorerSpec(meta["key"], tuple(meta["feature_names"]), meta["kind"], int(meta["threads"]), positional)
    scorer = _LOADED.get(spec.key)
    if scorer is None or scorer.spec != spec:
        from threadpoolctl import threadpool_limits

        from mlops_spark.training.model_io import load_local_model

        estimator = load_local_model(Path(data_path) / MODEL_DIR).estimator
        # After the load, so that the OpenMP runtime scikit-learn uses is loaded and gets the limit.
        threadpool_limits(limits=spec.threads)
        scorer = ScoringModel(estimator, spec)
        _LOADED.clear()  # one model per worker: a new version replaces the old one
        _LOADED[spec.key] = scorer
    return scorer


def save_scoring_model(model_dir: Path, spec: ScorerSpec, dst: Path) -> Path:
    """Wrap a downloaded MLflow sklearn/skops model folder as a pyfunc model for ``spark_udf``.

    Args:
        model_dir: the registered model's files (``MLmodel``, ``*.skops``, ...).
        spec: see :class:`ScorerSpec`.
        dst: an empty scratch folder; the wrapper is written to ``dst/pyfunc``.

    Returns:
        the wrapper's folder (a local model URI for ``spark_udf``).
    """
    import mlflow

    data = dst / "scorer"
    shutil.copytree(model_dir, data / MODEL_DIR)
    (data / SCORER_FILE).write_text(json.dumps(asdict(spec)))
    requirements = model_dir / "requirements.txt"
    # Explicit requirements: MLflow would otherwise infer them by loading the model in a subprocess.
    pip = [r for r in requirements.read_text().splitlines() if r.strip()] if requirements.exists() else []
    path = dst / "pyfunc"
    mlflow.pyfunc.save_model(str(path), loader_module=__name__, data_path=str(data), pip_requirements=pip)
    return path


def result_type(kind: str) -> T.StructType:
    """The UDF's struct result: ``prediction`` double (+ ``probability`` double for classifiers)."""
    fields = [T.StructField(PREDICTION, T.DoubleType(), True)]
    if kind == "classifier":
        fields.append(T.StructField(PROBABILITY, T.DoubleType(), True))
    return T.StructType(fields)


@contextlib.contextmanager
def _quiet_env_manager_warning() -> Iterator[None]:
    """``env_manager='local'`` is the point here (the workers run this package), so MLflow's
    advice to recreate the training environment is noise on every run."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def scoring_udf(spark: Any, pyfunc_dir: Path, kind: str) -> Any:
    """``mlflow.pyfunc.spark_udf`` over the wrapper: local environment, struct result."""
    import mlflow

    with _quiet_env_manager_warning():
        return mlflow.pyfunc.spark_udf(spark, str(pyfunc_dir), result_type=result_type(kind), env_manager="local")


def score_frame(df: DataFrame, udf: Any, spec: ScorerSpec, passthrough: list[str]) -> DataFrame:
    """Score ``df`` (passthrough columns + float64 feature columns) with the model UDF.

    Returns:
        passthrough columns, ``prediction`` double, ``probability`` double (null for regressors).
    """
    args = [F.col(name) for name in spec.feature_names] if spec.positional_input else [F.struct(*spec.feature_names)]
    scored: Column = udf(*args)
    probability = F.col(f"_scored.{PROBABILITY}") if spec.kind == "classifier" else F.lit(None).cast("double")
    return df.select(*passthrough, scored.alias("_scored")).select(
        *passthrough, F.col(f"_scored.{PREDICTION}").alias(PREDICTION), probability.alias(PROBABILITY)
    )
