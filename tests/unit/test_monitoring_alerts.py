"""Thresholds, the k-of-n retraining rule and the alert payload."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from mlops_spark.monitoring import alerts

AT = dt.datetime(2024, 3, 2, 6, 0)
DAY = dt.date(2024, 3, 2)


@pytest.mark.parametrize(
    ("runs", "k", "n", "due"),
    [
        ([True], 1, 1, True),
        ([False, True], 2, 3, False),  # one noisy day does not retrain
        ([True, False, True], 2, 3, True),
        ([True, True, False], 2, 3, False),  # the latest run must be breached
        ([True, True, False, False, True], 2, 3, False),  # older breaches fall out of the window
        ([], 1, 3, False),
    ],
)
def test_retrain_rule_needs_k_of_last_n_with_latest_breached(runs, k, n, due):
    assert alerts.retrain_rule(runs, k, n) is due


def test_thresholds_mark_values_above_as_breached_and_never_nan(spark):
    metrics = spark.createDataFrame(
        [("x", "psi", 0.3), ("y", "psi", 0.25), ("z", "psi", float("nan")), ("x", "ks_statistic", 0.9)],
        "feature string, metric string, value double",
    )
    out = alerts.with_thresholds(metrics, {"psi": 0.25}, "m", 4, DAY, AT)
    expected = [
        Row(run_date=DAY, model="m", model_version=4, feature=f, metric=m, value=v, threshold=t, breached=b, computed_at=AT)
        for f, m, v, t, b in [
            ("x", "psi", 0.3, 0.25, True),
            ("y", "psi", 0.25, 0.25, False),
            ("z", "psi", float("nan"), 0.25, False),
            ("x", "ks_statistic", 0.9, None, False),
        ]
    ]
    assertDataFrameEqual(out, expected)


def test_alert_payload_names_each_breach_and_the_retrain_decision():
    alert = alerts.Alert("churn", 3, DAY, [{"feature": "x1", "metric": "psi", "value": 0.8, "threshold": 0.25}], True, "/r.html")
    payload = alert.payload()
    assert payload["text"] == "mlops-spark monitor: churn v3 2024-03-02: 1 breach(es): x1.psi=0.8>0.25"
    assert (payload["retrain"], payload["run_date"], payload["report"]) == (True, "2024-03-02", "/r.html")


def test_webhook_to_a_closed_port_gives_up_after_retries_without_raising():
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    assert alerts.post_webhook(url, {"text": "x"}, timeout=1.0, retries=1, backoff=0.0) is False
