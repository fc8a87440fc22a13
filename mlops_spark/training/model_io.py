"""Saving and loading models in MLflow's skops format with the project's own
list of trusted types: nothing is ever unpickled.

MLflow keeps the trusted-types list inside the model's ``MLmodel`` file, so a
crafted model could trust anything. :func:`load_local_model` therefore checks the
model's list against :data:`TRUSTED_TYPES` and hands skops the project's list,
not the model's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_spark.errors import ConfigError, ModelNotFoundError
from mlops_spark.log import fields

log = logging.getLogger(__name__)

# Types skops does not trust by default that the allowed estimators contain.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)

FEATURE_SPEC_KEY = "mlops_spark_feature_spec"


def trusted_types_for(model: Any) -> list[str]:
    """The types of ``model`` that skops must be told to trust, checked against the allow-list.

    Raises:
        ConfigError: the fitted model holds a type outside :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    needed = sio.get_untrusted_types(data=sio.dumps(model))
    unknown = sorted(set(needed) - set(TRUSTED_TYPES))
    if unknown:
        raise ConfigError(f"model holds types that are not on the trusted list: {', '.join(unknown)}")
    return list(needed)


@dataclass(frozen=True)
class LocalModel:
    """A model loaded from a local MLflow model folder.

    Attributes:
        estimator: the fitted scikit-learn estimator.
        feature_spec: the feature spec stored with the model (see ``train.feature_spec``).
        input_columns: input column names of the model signature, in order.
        input_types: signature type name per input column (``double``, ``long``, ...).
    """

    estimator: Any
    feature_spec: dict[str, Any]
    input_columns: list[str]
    input_types: dict[str, str]


def load_local_model(model_dir: str | Path) -> LocalModel:
    """Load a downloaded MLflow sklearn model folder safely.

    Raises:
        ModelNotFoundError: the folder is not an sklearn MLflow model in skops format,
            or it trusts types outside the allow-list.
    """
    import skops.io as sio
    from mlflow.models import Model

    model_dir = Path(model_dir)
    mlmodel = Model.load(str(model_dir / "MLmodel"))
    flavor = mlmodel.flavors.get("sklearn")
    if flavor is None or flavor.get("serialization_format") != "skops":
        raise ModelNotFoundError(f"{model_dir}: not a scikit-learn model saved in skops format; refusing to load it")
    declared = set(flavor.get("skops_trusted_types") or [])
    if not declared <= set(TRUSTED_TYPES):
        raise ModelNotFoundError(
            f"{model_dir}: model trusts types outside the allow-list: {', '.join(sorted(declared - set(TRUSTED_TYPES)))}"
        )
    estimator = sio.load(model_dir / flavor["pickled_model"], trusted=list(TRUSTED_TYPES))
    spec = (mlmodel.metadata or {}).get(FEATURE_SPEC_KEY)
    feature_spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
    inputs = mlmodel.signature.inputs if mlmodel.signature is not None else None
    columns = inputs.input_names() if inputs is not None else list(feature_spec.get("feature_names", []))
    types = {c.name: c.type.name for c in inputs.inputs} if inputs is not None else {}
    log.info("model loaded", extra=fields(model_dir=str(model_dir), inputs=len(columns)))
    return LocalModel(estimator, feature_spec, list(columns), types)
