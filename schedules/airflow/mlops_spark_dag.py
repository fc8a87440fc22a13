"""Airflow DAGs of mlops-spark: every task runs one step through ``spark-submit.sh``.

``mlops_spark_daily``: ingest -> validate -> features -> training_set -> score -> monitor,
then a branch on the monitor's exit code: 3 (thresholds breached) goes to ``retrain``,
which runs ``mlops-spark retrain --when-due`` (the k-of-n rule decides; one noisy day does
not retrain), 0 goes to ``no_retrain``. ``mlops_spark_weekly_retrain`` retrains on schedule.

Set the Airflow Variables ``mlops_spark_home`` (checkout with spark-submit.sh),
``mlops_spark_env`` (conf/<env>.yaml) and ``mlops_spark_model`` (registered model).
Every step is idempotent for its ``--run-date`` ({{ ds }}), so retries and backfills are safe.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator

HOME = "{{ var.value.get('mlops_spark_home', '/opt/mlops-spark') }}"
COMMON = "--env {{ var.value.get('mlops_spark_env', 'prod') }} --run-date {{ ds }}"
MODEL = "{{ var.value.get('mlops_spark_model', 'churn') }}"
MONITOR_BREACHED = 3

DEFAULT_ARGS = {
    "owner": "mlops",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=3),
}


def submit(step: str, extra: str = "") -> str:
    """The bash command running one step on the cluster."""
    return f"{HOME}/spark-submit.sh {step} {COMMON} {extra}".strip()


def choose_branch(**context: object) -> str:
    """``retrain`` when the monitor reported breaches (its last output line is ``monitor_exit=3``)."""
    ti = context["ti"]
    last = ti.xcom_pull(task_ids="monitor")  # type: ignore[attr-defined]
    return "retrain" if last == f"monitor_exit={MONITOR_BREACHED}" else "no_retrain"


with DAG(
    dag_id="mlops_spark_daily",
    description="Daily batch: ingest .. score, monitor, retrain when the k-of-n rule says so",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mlops-spark"],
) as daily:
    ingest = BashOperator(task_id="ingest", bash_command=submit("ingest", "--available-now"))
    validate = BashOperator(task_id="validate", bash_command=submit("validate"))
    features = BashOperator(task_id="features", bash_command=submit("features"))
    training_set = BashOperator(task_id="training_set", bash_command=submit("training-set"))
    score = BashOperator(task_id="score", bash_command=submit("score", f"--model {MODEL}@champion"))
    # Exit code 3 means "alert raised", not "task failed": record it for the branch and succeed.
    monitor = BashOperator(
        task_id="monitor",
        bash_command=submit("monitor", f"--model {MODEL}")
        + f'; rc=$?; echo "monitor_exit=$rc"; if [ $rc -ne 0 ] && [ $rc -ne {MONITOR_BREACHED} ]; then exit $rc; fi',
        do_xcom_push=True,
        retries=1,
    )
    branch = BranchPythonOperator(task_id="retrain_or_not", python_callable=choose_branch)
    retrain = BashOperator(task_id="retrain", bash_command=submit("retrain", f"--model {MODEL} --when-due"), retries=0)
    no_retrain = EmptyOperator(task_id="no_retrain")

    ingest >> validate >> features >> training_set >> score >> monitor >> branch >> [retrain, no_retrain]


with DAG(
    dag_id="mlops_spark_weekly_retrain",
    description="Retrain on schedule, whatever monitoring says; promotion still needs a better model",
    schedule="@weekly",
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mlops-spark"],
) as weekly:
    BashOperator(task_id="retrain", bash_command=submit("retrain", f"--model {MODEL}"), retries=0)
