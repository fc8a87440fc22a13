"""Settings of the ``monitor`` step (section ``monitoring`` of the settings)."""

from __future__ import annotations

from pydantic import Field, field_validator

from mlops_spark.config.base import Section

RETRAIN_ORDER = ("ingest", "validate", "features", "training-set", "train", "score")


class RetrainStep(Section):
    step: str
    """Step to run: one of ingest, validate, features, training-set, train, score."""

    args: list[str] = Field(default_factory=list)
    """Its command-line options, as for ``mlops-spark <step>`` (``["--source", "orders"]``);
    ``--run-date`` and ``--env`` are added by ``retrain``."""

    @field_validator("step")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RETRAIN_ORDER:
            raise ValueError(f"'{value}' is not a retrain step ({', '.join(RETRAIN_ORDER)})")
        return value


class MonitoringSettings(Section):
    model: str | None = None
    """Registered model to monitor (its ``@champion``); the ``monitor --model`` option overrides it."""

    window_days: int = Field(default=1, ge=1)
    """Length of the current window in days, ending on the run date (1 = that day, 7 = a week)."""

    psi_bins: int = Field(default=10, ge=2, le=1000)
    """Number of PSI bins for numeric features, cut at reference quantiles (deciles by default)."""

    psi_epsilon: float = Field(default=1e-4, gt=0, lt=0.01)
    """Share that replaces an empty bin's 0 in PSI, so ``ln(p/q)`` stays finite."""

    quantile_accuracy: int = Field(default=10000, ge=100)
    """Tunes the work of the numeric drift metrics, never their values (they are exact): the
    first ``4 * quantile_accuracy`` rows of each side place the first-pass bins."""

    thresholds: dict[str, float] = Field(default_factory=lambda: {"psi": 0.25, "accuracy_drop": 0.05})
    """Metric name -> threshold; a value above it is a breach. Known names: psi, ks_statistic,
    js_distance, wasserstein, null_rate_change, chi2_statistic, prediction_psi, accuracy_drop,
    roc_auc_drop, ... (``<metric>_drop`` = baseline minus current)."""

    retrain_k: int = Field(default=2, ge=1)
    """Retrain when at least ``k`` of the last ``n`` runs breached, the latest included."""

    retrain_n: int = Field(default=3, ge=1)
    """Number of latest monitoring runs the retraining rule looks at."""

    webhook_url: str | None = None
    """Optional URL that receives each alert as a JSON POST (Slack-compatible ``text`` field included)."""

    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    """Timeout of one webhook attempt."""

    webhook_retries: int = Field(default=3, ge=0)
    """Extra webhook attempts after a failure, with exponential back-off."""

    webhook_backoff_seconds: float = Field(default=0.5, ge=0)
    """First back-off delay; doubled after each failed attempt."""

    labels_table: str | None = None
    """Table of delayed ground truth (entity keys, a timestamp and the label), ``database.table``;
    ``None`` skips the performance metrics."""

    label_column: str = "label"
    """Label column of ``labels_table``."""

    label_timestamp_column: str = "label_ts"
    """Timestamp column of ``labels_table``: the event time the label belongs to."""

    label_max_delay_days: int = Field(default=30, ge=0)
    """A label matches the latest prediction of its entity made at most this many days before it."""

    retrain_steps: list[RetrainStep] = Field(default_factory=list)
    """The loop ``retrain`` runs, in order (ingest with availableNow, validate, features,
    training-set, train, score); a step may appear several times (one per source or table)."""
