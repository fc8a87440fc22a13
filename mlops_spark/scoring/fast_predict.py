"""Faster predictions of scikit-learn's HistGradientBoosting models: the trees walked over binned features.

``HistGradientBoosting*.predict`` walks every tree over the float64 rows. The fitted model
also holds the binning it trained on, and every split is stored both as a float
threshold and as a bin index; scikit-learn itself walks the trees over binned rows
(one byte per feature instead of eight) when it scores during fit. For numeric features
the two walks give identical results:

* binning maps ``x`` to the first bin ``i`` with ``x <= thresholds[i]``, and a split at
  bin ``b`` has the float threshold ``thresholds[b]`` (``+inf`` for the split between the
  last bin and the missing values), so ``x <= thresholds[b]`` exactly when ``bin(x) <= b``,
  ``+inf`` and ``-inf`` included;
* NaN maps to the missing-values bin, which follows the split's missing direction, as
  NaN does in the float walk.

Categorical features are not equivalent (scikit-learn bins unknown categories wrongly,
as its own docstring says), so models with any categorical feature keep the public path.

Measured on 1M rows x 9 features, 100 trees, one thread: ``predict_proba`` 3.55 s, the
binned walk 2.61 s including the binning (0.24 s), identical probabilities.

The binned walk uses scikit-learn internals (``_bin_mapper``, ``_predictors``,
``_predict_iterations``, ``_loss``, the binning kernel). :class:`Predictor` therefore
checks it against the public predict on the first rows of the first batch it scores,
and any difference or error switches it to the public path for good, with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mlops_spark.log import fields

log = logging.getLogger(__name__)

# Rows of the first batch checked against the public predict.
CHECK_ROWS = 2048
_INTERNALS = (
    "_bin_mapper",
    "_predictors",
    "_baseline_prediction",
    "_loss",
    "_predict_iterations",
    "_preprocess_X",
    "n_trees_per_iteration_",
)


def public_arrays(model: Any, kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Prediction (float64) and, for classifiers, the probability of the positive
    class (binary) or of the predicted class (multiclass), through the public API."""
    if kind != "classifier":
        return np.asarray(model.predict(x), dtype="float64"), None
    return _from_proba(model, np.asarray(model.predict_proba(x)))


def _from_proba(model: Any, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = proba.argmax(axis=1)
    prediction = np.asarray(model.classes_)[best].astype("float64")
    probability = proba[:, 1] if proba.shape[1] == 2 else proba[np.arange(len(best)), best]
    return prediction, probability.astype("float64")


def binned_capable(model: Any) -> bool:
    """A fitted HistGradientBoosting model with numeric features only and the internals the binned walk uses."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if not isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return False
    if not all(hasattr(model, name) for name in _INTERNALS):
        return False
    categorical = getattr(model, "is_categorical_", None)
    return categorical is None or not bool(np.any(categorical))


def binned_arrays(model: Any, kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """What :func:`public_arrays` returns, computed by walking the trees over binned ``x``.

    Only for models :func:`binned_capable` accepts.
    """
    from sklearn.ensemble._hist_gradient_boosting._binning import _map_to_bins
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    # The OpenMP limit in force now (threadpoolctl's in a scoring worker), not the bin
    # mapper's thread count from fit time.
    threads = _openmp_effective_n_threads()
    values = model._preprocess_X(x, reset=False)
    mapper = model._bin_mapper
    binned = np.zeros_like(values, dtype=np.uint8, order="F")
    _map_to_bins(values, mapper.bin_thresholds_, mapper.is_categorical_, mapper.missing_values_bin_idx_, threads, binned)
    baseline = model._baseline_prediction
    raw = np.zeros((values.shape[0], model.n_trees_per_iteration_), dtype=baseline.dtype, order="F")
    raw += baseline
    model._predict_iterations(binned, model._predictors, raw, True, threads)
    if kind != "classifier":
        return np.asarray(model._loss.link.inverse(raw.ravel()), dtype="float64"), None
    return _from_proba(model, np.asarray(model._loss.predict_proba(raw)))


class Predictor:
    """``predict(x) -> (prediction, probability)`` for one model, by the binned walk when
    the model allows it and its first batch agrees with the public predict."""

    def __init__(self, model: Any, kind: str) -> None:
        self.model = model
        self.kind = kind
        self.binned = binned_capable(model)
        self._checked = False

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.binned and not self._checked:
            self._checked = True
            self.binned = self._agrees(x[:CHECK_ROWS])
        return binned_arrays(self.model, self.kind, x) if self.binned else public_arrays(self.model, self.kind, x)

    def _agrees(self, head: np.ndarray) -> bool:
        try:
            fast = binned_arrays(self.model, self.kind, head)
        except Exception as exc:  # internals changed shape: the public path still works
            log.warning("binned predict unavailable, using predict", extra=fields(model=type(self.model).__name__, error=repr(exc)))
            return False
        public = public_arrays(self.model, self.kind, head)
        (fast_pred, fast_prob), (pred, prob) = fast, public
        same = np.array_equal(fast_pred, pred, equal_nan=True) and (
            prob is None if fast_prob is None else prob is not None and np.array_equal(fast_prob, prob, equal_nan=True)
        )
        if not same:
            log.warning("binned predict differs from predict, using predict", extra=fields(model=type(self.model).__name__, rows=len(head)))
        return same
