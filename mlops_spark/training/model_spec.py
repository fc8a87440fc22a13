"""Model definitions: one YAML file per model under ``conf/models/``.

A definition names the estimator (a class path from an allow-list plus its
parameters), the training set, the label, the features with the feature tables
they come from (the *feature spec* scoring uses to look features up again), and
the promotion rule. Unknown keys and unknown estimators are :class:`ConfigError`
naming the file.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops_spark.config.loader import default_conf_dir, read_yaml
from mlops_spark.errors import ConfigError

# Only estimators whose fitted state skops can save and load with an explicit
# list of trusted types (see ``skops_io``); anything else would need pickle.
ESTIMATORS: dict[str, Literal["classifier", "regressor"]] = {
    "sklearn.ensemble.HistGradientBoostingClassifier": "classifier",
    "sklearn.ensemble.HistGradientBoostingRegressor": "regressor",
    "sklearn.linear_model.LogisticRegression": "classifier",
    "sklearn.ensemble.RandomForestClassifier": "classifier",
    "sklearn.ensemble.RandomForestRegressor": "regressor",
}

# Metric name -> True when a higher value is better.
CLASSIFIER_METRICS = {"roc_auc": True, "pr_auc": True, "accuracy": True, "f1": True, "log_loss": False}
REGRESSOR_METRICS = {"rmse": False, "mae": False, "r2": True}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class EstimatorSpec(_Strict):
    class_path: str = Field(alias="class")
    """Fully qualified estimator class, one of :data:`ESTIMATORS`."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the estimator's constructor."""


class FeatureLookup(_Strict):
    table: str
    """Feature table, ``database.table`` or a bare name in the features database."""

    join_keys: list[str]
    """Entity key columns shared by the entities and the feature table."""

    timestamp_key: str = "feature_ts"
    """Feature table column holding the time each feature row became true."""

    columns: list[str]
    """Feature columns taken from the table (same names in the training set)."""


class SplitSpec(_Strict):
    column: str = "split"
    """Column of the training set with ``train`` / ``validation`` / ``test``; used when present."""

    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    """Share of rows (latest labels after train) for validation when there is no split column."""

    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    """Share of rows (the latest labels) held out for testing when there is no split column."""


class PromotionSpec(_Strict):
    metric: str = "roc_auc"
    """Test-split metric that decides promotion (classifier: roc_auc, pr_auc, accuracy, f1,
    log_loss; regressor: rmse, mae, r2)."""

    min_relative_improvement: float = Field(default=0.02, ge=0)
    """Relative improvement over the champion needed to promote (0.02 = 2%)."""

    min_rows: int = Field(default=100, ge=1)
    """Guard: fewest training rows a promotable model may be fitted on."""

    metric_floor: float | None = None
    """Guard: worst acceptable metric value (a minimum when higher is better, else a maximum)."""


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Registered model name; predictions go to ``ml.predictions_<name>``."""

    description: str = ""
    """Free text shown in the registry."""

    estimator: EstimatorSpec
    """The estimator and its parameters."""

    training_set: str
    """Training set table: ``database.table`` or a bare name ``x`` for ``ml.training_set_x``."""

    label: str = "label"
    """Label column of the training set."""

    entity_keys: list[str]
    """Entity key columns (kept on every prediction row)."""

    label_timestamp: str = "label_ts"
    """Time column of the label; orders the time-based split."""

    features: list[FeatureLookup] = Field(min_length=1)
    """Features grouped by the feature table they are looked up in."""

    split: SplitSpec = Field(default_factory=SplitSpec)
    """How rows are split into train / validation / test."""

    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    """When a new version replaces the champion."""

    @field_validator("features")
    @classmethod
    def _unique_columns(cls, value: list[FeatureLookup]) -> list[FeatureLookup]:
        names = [c for f in value for c in f.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature columns listed twice: {', '.join(dupes)}")
        return value

    @property
    def kind(self) -> Literal["classifier", "regressor"]:
        """``classifier`` or ``regressor``, from the estimator class."""
        return ESTIMATORS[self.estimator.class_path]

    @property
    def feature_names(self) -> list[str]:
        """Every feature column, in model input order."""
        return [c for f in self.features for c in f.columns]

    def metric_higher_is_better(self) -> bool:
        """Direction of the promotion metric."""
        return {**CLASSIFIER_METRICS, **REGRESSOR_METRICS}[self.promotion.metric]

    def build_estimator(self) -> Any:
        """A fresh, unfitted estimator from the class path and parameters.

        Raises:
            ConfigError: the parameters are not accepted by the estimator.
        """
        module_name, _, class_name = self.estimator.class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        try:
            return cls(**self.estimator.params)
        except TypeError as exc:
            raise ConfigError(f"model {self.name}: estimator parameters: {exc}") from None


def resolve_model_file(name_or_path: str, conf_dir: Path | None = None) -> Path:
    """``churn`` -> ``<conf_dir>/models/churn.yaml``; a path with a suffix is taken as is."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return Path(name_or_path)
    return (conf_dir or default_conf_dir()) / "models" / f"{name_or_path}.yaml"


def load_model_spec(path: Path) -> ModelSpec:
    """Read and validate one model definition.

    Raises:
        ConfigError: missing file, bad YAML, unknown key, unknown estimator or metric
            not matching the estimator kind; the message names the file.
    """
    data = read_yaml(path)
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {err['msg']}") from None
    if spec.estimator.class_path not in ESTIMATORS:
        allowed = ", ".join(sorted(ESTIMATORS))
        raise ConfigError(f"{path}: estimator.class: '{spec.estimator.class_path}' is not an allowed estimator ({allowed})")
    metrics = CLASSIFIER_METRICS if spec.kind == "classifier" else REGRESSOR_METRICS
    if spec.promotion.metric not in metrics:
        raise ConfigError(f"{path}: promotion.metric: '{spec.promotion.metric}' is not a {spec.kind} metric ({', '.join(metrics)})")
    return spec
