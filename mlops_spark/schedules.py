"""The daily pipeline as one list of CLI calls, rendered for Airflow, Databricks and EMR.

Every scheduled task is ``mlops-spark <step> <options>`` (through ``spark-submit.sh`` or
``jobs/<step>.py``) plus ``--env`` and ``--run-date``. The names the pipeline works on
(source, tables, feature set, training set, model, entities) are fields of
:class:`Pipeline`, so a team with other names regenerates the three schedules instead of
editing task options by hand; :func:`render` checks every task against the real CLI
parser before writing anything.

    python -m mlops_spark.schedules write [--out schedules] [--model NAME ...]
    python -m mlops_spark.schedules check          # the files in schedules/ are the defaults'
    python -m mlops_spark.schedules emr-steps --s3-prefix s3://BUCKET/mlops-spark --run-date 2024-06-01 \\
        [--setting MLOPS_LAKE_ROOT=s3a://BUCKET/lake ...] > steps.json
    python -m mlops_spark.schedules emr-artifacts --out dist/emr   # then: aws s3 sync dist/emr s3://BUCKET/mlops-spark/

Nothing here starts Spark; importing this module imports only the standard library and
PyYAML (the Databricks run-date task imports it on the cluster).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

RUN_DATE = "<run-date>"
"""Placeholder for the run date inside task options; each scheduler substitutes its own expression."""

END_OF_RUN_DATE = f"{RUN_DATE}T23:59:59.999999"
"""``score --as-of``: the run date's feature snapshot is stamped with its last microsecond."""

MONITOR_BREACHED = 3
"""Exit code of ``monitor`` when a threshold is breached (an alert, not a failure)."""

AIRFLOW_DS = "{{ ds }}"
DATABRICKS_RUN_DATE = "{{tasks.run_date.values.run_date}}"
EMR_RUN_DATE = "RUN_DATE"
EMR_S3_PREFIX = "s3://CHANGE-ME/mlops-spark"

DEFAULT_ENVS = {"airflow": "emr", "databricks": "databricks", "emr": "emr"}
"""Settings environment (``conf/<env>.yaml``) each scheduler passes as ``--env``."""

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "airflow": Path("airflow") / "mlops_spark_dag.py",
    "databricks": Path("databricks") / "databricks.yml",
    "emr": Path("emr") / "steps.json",
}
"""The rendered files, relative to the schedules folder."""

# Task options reach Airflow through bash: keep them to characters that need no quoting.
_SAFE = re.compile(r"^[A-Za-z0-9_.@:/,=+-]+$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class ScheduleError(Exception):
    """A pipeline name or generator option that cannot make a valid schedule (exit code 2)."""


@dataclass(frozen=True)
class Task:
    """One scheduled call: ``mlops-spark <step> <args> --env ENV --run-date DATE``."""

    key: str
    """Task id in every scheduler (letters, digits, underscore)."""

    step: str
    """CLI step, also the job file ``jobs/<step>.py`` (dashes as underscores)."""

    args: tuple[str, ...]
    """The step's options; :data:`RUN_DATE` stands for the run date."""

    @property
    def job_file(self) -> str:
        """``jobs/<step>.py`` of this step."""
        return f"jobs/{self.step.replace('-', '_')}.py"

    def argv(self, env: str, run_date: str) -> list[str]:
        """The CLI arguments after the step name, with the run date filled in."""
        return [*(a.replace(RUN_DATE, run_date) for a in self.args), "--env", env, "--run-date", run_date]


@dataclass(frozen=True)
class Pipeline:
    """The names the daily pipeline works on; the defaults are the repository's example."""

    source: str = "transactions"
    """File source ingested into bronze (``conf/sources/<source>.yaml``)."""

    stream_source: str | None = "transactions_stream"
    """Kafka source drained available-now after the files; ``None``: no stream task."""

    bronze_table: str = "bronze.transactions"
    """Bronze table validated into silver (its suite: ``conf/expectations/<table>.yaml``)."""

    feature_set: str = "customer_spend"
    """Feature set computed for the run date (``conf/features/<name>.yaml``)."""

    events_table: str = "silver.transactions"
    """Event table the churn labels are computed from."""

    entity_keys: tuple[str, ...] = ("customer_id",)
    """Entity key columns of the events."""

    event_time: str = "event_ts"
    """Event time column of the events."""

    horizon_days: int = 90
    """Churn horizon of the labels, in days."""

    labels_table: str = "ml.churn_labels"
    """Label table the labels step writes and the training set reads."""

    training_set: str = "customer_churn"
    """Training set definition (``conf/training_sets/<name>.yaml``)."""

    model: str = "customer_churn"
    """Model definition (``conf/models/<name>.yaml``) whose ``name`` is also the registered model."""

    entities: str = "ml.customers_to_score"
    """Entity table scored with ``@champion`` (an input of the pipeline: see ``schedules/README.md``)."""

    def check(self) -> None:
        """Raises :class:`ScheduleError` for a name a scheduler could not pass through safely."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for item in value if isinstance(value, tuple) else (value,):
                if item is not None and not _SAFE.match(str(item)):
                    raise ScheduleError(f"pipeline {f.name} '{item}': use letters, digits and _ . @ : / , = + - only")

    def score_args(self) -> tuple[str, ...]:
        """Options of the score step, without ``--as-of``."""
        return ("--model", f"{self.model}@champion", "--entities", self.entities)

    def daily(self) -> list[Task]:
        """ingest .. monitor in pipeline order (the monitor task last)."""
        tasks = [Task("ingest", "ingest", ("--source", self.source))]
        if self.stream_source:
            tasks.append(Task("ingest_stream", "ingest", ("--source", self.stream_source, "--mode", "available-now")))
        labels = ("--events-table", self.events_table, "--entity-keys", ",".join(self.entity_keys), "--event-time", self.event_time)
        tasks += [
            Task("validate", "validate", ("--table", self.bronze_table)),
            Task("features", "features", ("--feature-set", self.feature_set)),
            Task("labels", "labels", (*labels, "--horizon-days", str(self.horizon_days), "--output-table", self.labels_table)),
            Task("training_set", "training-set", ("--definition", self.training_set)),
            Task("train", "train", ("--model", self.model)),
            Task("score", "score", (*self.score_args(), "--as-of", END_OF_RUN_DATE)),
            Task("monitor", "monitor", ("--model", self.model)),
        ]
        return tasks

    def retrain(self, when_due: bool = True) -> Task:
        """``retrain``: with ``when_due`` only when k of the last n monitoring runs breached."""
        return Task("retrain", "retrain", ("--model", self.model, *(["--when-due"] if when_due else [])))

    def retrain_loop(self) -> list[dict[str, object]]:
        """The ``monitoring.retrain_steps`` this pipeline needs in its environment's settings."""
        loop: list[dict[str, object]] = []
        for task in self.daily():
            if task.step in ("labels", "monitor"):
                continue  # not retrain steps: labels change with the data only, monitoring decides
            args = self.score_args() if task.step == "score" else task.args
            loop.append({"step": task.step, "args": list(args)})
        return loop


def _check_with_cli(tasks: Iterable[Task], env: str) -> None:
    """Every task's options as the real parser sees them; raises :class:`ScheduleError` on the first rejected one."""
    import contextlib
    import io

    from mlops_spark.cli import build_parser

    parser = build_parser()
    for task in tasks:
        argv = [task.step, *task.argv(env, "2024-06-01")]
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit:
            raise ScheduleError(f"task {task.key}: the CLI rejects `mlops-spark {' '.join(argv)}`") from None


def resolve_run_date(given: str, started: str) -> dt.date:
    """Run date of a Databricks run: the ``run_date`` job parameter when set (backfill, repair),
    else the day before the run started: the last complete day, as Airflow's ``{{ ds }}``.

    Raises:
        ScheduleError: either value is not a YYYY-MM-DD date.
    """
    text = given.strip() or started.strip()
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"run date '{text}' is not a date in YYYY-MM-DD form") from None
    return day if given.strip() else day - dt.timedelta(days=1)


# ----------------------------------------------------------------------------- Airflow

_AIRFLOW = '''"""Airflow DAGs of mlops-spark. Generated by `python -m mlops_spark.schedules write`:
change the pipeline's names with the generator's options, not here.

``mlops_spark_daily`` runs one task per step through ``spark-submit.sh``, in pipeline order:
@@ORDER@@;
then the monitor's exit code branches: @@BREACHED@@ (a threshold breached) to ``retrain --when-due``
(the k-of-n rule decides; one noisy day does not retrain), 0 to ``no_retrain``.
``mlops_spark_weekly_retrain`` retrains on schedule.

Airflow Variables: ``mlops_spark_home`` (a checkout with spark-submit.sh and its venv) and
``mlops_spark_env`` (the settings file conf/<env>.yaml, default ``@@ENV@@``); the worker's
environment carries MLOPS_SPARK_MASTER and the values that file requires. Every step is
idempotent for its ``--run-date`` ({{ ds }}), so retries and backfills are safe.
"""

from __future__ import annotations

import datetime as dt

try:  # Airflow 3, or Airflow 2 with the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import BranchPythonOperator

from airflow import DAG

HOME = "{{ var.value.get('mlops_spark_home', '/opt/mlops-spark') }}"
COMMON = "--env {{ var.value.get('mlops_spark_env', '@@ENV@@') }} --run-date {{ ds }}"
MONITOR_BREACHED = @@BREACHED@@

# task_id -> `spark-submit.sh` arguments (the step, then its options); {{ ds }} is the run date.
DAILY: list[tuple[str, list[str]]] = [
@@DAILY@@
]
RETRAIN_WHEN_DUE: list[str] = @@RETRAIN_WHEN_DUE@@
WEEKLY_RETRAIN: list[str] = @@WEEKLY_RETRAIN@@

DEFAULT_ARGS = {
    "owner": "mlops",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=3),
}


def submit(args: list[str]) -> str:
    """The bash command running one step on the cluster (the options need no quoting)."""
    return f"{HOME}/spark-submit.sh {' '.join(args)} {COMMON}"


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
    tasks = {}
    for task_id, args in DAILY:
        if task_id == "monitor":
            # Exit code 3 means "alert raised", not "task failed": record it for the branch and succeed.
            tasks[task_id] = BashOperator(
                task_id=task_id,
                bash_command=submit(args)
                + f'; rc=$?; echo "monitor_exit=$rc"; if [ $rc -ne 0 ] && [ $rc -ne {MONITOR_BREACHED} ]; then exit $rc; fi',
                do_xcom_push=True,
                retries=1,
            )
        else:
            tasks[task_id] = BashOperator(task_id=task_id, bash_command=submit(args))
    branch = BranchPythonOperator(task_id="retrain_or_not", python_callable=choose_branch)
    retrain = BashOperator(task_id="retrain", bash_command=submit(RETRAIN_WHEN_DUE), retries=0)
    no_retrain = EmptyOperator(task_id="no_retrain")

    ordered = [tasks[task_id] for task_id, _ in DAILY]
    for i in range(1, len(ordered)):
        ordered[i - 1] >> ordered[i]
    ordered[-1] >> branch >> [retrain, no_retrain]


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
    BashOperator(task_id="retrain", bash_command=submit(WEEKLY_RETRAIN), retries=0)
'''


def _py_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _py_row(key: str, args: Sequence[str], width: int = 140) -> str:
    """One ``(task_id, [args])`` entry of a list, laid out as ``ruff format`` would."""
    line = f"    ({json.dumps(key)}, {_py_list(args)}),"
    if len(line) <= width:
        return line
    inner = f"        {_py_list(args)},"
    if len(inner) > width:
        inner = "        [\n" + "".join(f"            {json.dumps(a)},\n" for a in args) + "        ],"
    return f"    (\n        {json.dumps(key)},\n{inner}\n    ),"


def render_airflow(pipeline: Pipeline, env: str = DEFAULT_ENVS["airflow"]) -> str:
    """The Airflow DAG file (Python source)."""
    daily = pipeline.daily()
    rows = [_py_row(t.key, [t.step, *(a.replace(RUN_DATE, AIRFLOW_DS) for a in t.args)]) for t in daily]
    return (
        _AIRFLOW.replace("@@ORDER@@", " -> ".join(t.key for t in daily))
        .replace("@@BREACHED@@", str(MONITOR_BREACHED))
        .replace("@@ENV@@", env)
        .replace("@@DAILY@@", "\n".join(rows))
        .replace("@@RETRAIN_WHEN_DUE@@", _py_list([pipeline.retrain().step, *pipeline.retrain().args]))
        .replace("@@WEEKLY_RETRAIN@@", _py_list([pipeline.retrain(when_due=False).step, *pipeline.retrain(when_due=False).args]))
    )


# -------------------------------------------------------------------------- Databricks

_DATABRICKS_HEADER = """\
# Databricks Asset Bundle of mlops-spark. Generated by `python -m mlops_spark.schedules write`:
# change the pipeline's names with the generator's options, not here.
#
#   databricks bundle deploy -t prod --var lake_root=s3://BUCKET/mlops-spark --var kafka_bootstrap_servers=HOST:9092
#   databricks bundle run mlops_spark_daily -t prod [--params run_date=2024-06-01]
#
# One spark_python_task per step runs jobs/<step>.py (the same file spark-submit uses) on one
# job cluster, with the package wheel as a library and the synced conf/ as MLOPS_CONF_DIR.
# The first task publishes the run date: the job parameter run_date when given (backfill,
# repair), else the day before the run started. The monitor task publishes task values
# (breached, retrain) instead of exiting 3 and the retrain_due condition task branches on
# them; retrain itself re-checks the k-of-n rule (--when-due), so a repaired run is safe.
"""


class _NoAliases(yaml.SafeDumper):
    """Repeated values written out in full (no ``&id001`` anchors)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def render_databricks(pipeline: Pipeline, env: str = DEFAULT_ENVS["databricks"]) -> str:
    """The bundle file ``databricks.yml`` (YAML)."""

    def python_task(key: str, job_file: str, parameters: list[str], depends_on: list[dict[str, str]], retries: int) -> dict[str, object]:
        task: dict[str, object] = {"task_key": key}
        if depends_on:
            task["depends_on"] = depends_on
        task.update(job_cluster_key="main", max_retries=retries)
        if retries:
            task["min_retry_interval_millis"] = 600000
        task["libraries"] = [{"whl": "../../dist/*.whl"}]
        task["spark_python_task"] = {"python_file": job_file, "parameters": parameters}
        return task

    started = ["--given={{job.parameters.run_date}}", "--started={{job.start_time.iso_date}}"]
    tasks = [python_task("run_date", "run_date.py", started, [], 2)]
    for t in pipeline.daily():
        params = t.argv("${var.env}", DATABRICKS_RUN_DATE) + (["--task-values"] if t.step == "monitor" else [])
        depends = [{"task_key": str(tasks[-1]["task_key"])}]
        tasks.append(python_task(t.key, f"../../{t.job_file}", params, depends, 1 if t.step == "monitor" else 2))
    tasks.append(
        {
            "task_key": "retrain_due",
            "depends_on": [{"task_key": "monitor"}],
            "condition_task": {"op": "EQUAL_TO", "left": "{{tasks.monitor.values.retrain}}", "right": "true"},
        }
    )
    retrain = pipeline.retrain()
    depends = [{"task_key": "retrain_due", "outcome": "true"}]
    tasks.append(python_task("retrain", f"../../{retrain.job_file}", retrain.argv("${var.env}", DATABRICKS_RUN_DATE), depends, 0))

    env_vars = {
        "MLOPS_CONF_DIR": "/Workspace${workspace.file_path}/conf",
        "MLOPS_LAKE_ROOT": "${var.lake_root}",
        "MLOPS_KAFKA__BOOTSTRAP_SERVERS": "${var.kafka_bootstrap_servers}",
    }
    bundle = {
        "bundle": {"name": "mlops-spark"},
        # jobs/ and conf/ live at the repository root; "." brings run_date.py.
        "sync": {"paths": [".", "../../jobs", "../../conf"]},
        "artifacts": {"mlops_spark_wheel": {"type": "whl", "path": "../..", "build": "python -m pip wheel --no-deps -w dist ."}},
        "variables": {
            "env": {"description": "settings environment (conf/<env>.yaml)", "default": env},
            "lake_root": {"description": "lake root, s3://BUCKET/PREFIX or abfss://... (MLOPS_LAKE_ROOT); required"},
            "kafka_bootstrap_servers": {"description": "Kafka bootstrap servers HOST:PORT,... (MLOPS_KAFKA__BOOTSTRAP_SERVERS); required"},
            "node_type": {"description": "worker node type of the job cluster", "default": "i3.xlarge"},
            "spark_version": {"description": "Databricks runtime of the job cluster (Spark 4)", "default": "17.3.x-scala2.13"},
        },
        "targets": {"dev": {"mode": "development", "default": True}, "prod": {"mode": "production"}},
        "resources": {
            "jobs": {
                "mlops_spark_daily": {
                    "name": "mlops-spark daily (${bundle.target})",
                    "max_concurrent_runs": 1,
                    "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC"},
                    "parameters": [{"name": "run_date", "default": ""}],
                    "email_notifications": {"on_failure": []},
                    "job_clusters": [
                        {
                            "job_cluster_key": "main",
                            "new_cluster": {
                                "spark_version": "${var.spark_version}",
                                "node_type_id": "${var.node_type}",
                                "num_workers": 2,
                                "spark_env_vars": env_vars,
                            },
                        }
                    ],
                    "tasks": tasks,
                }
            }
        },
    }
    return _DATABRICKS_HEADER + yaml.dump(bundle, Dumper=_NoAliases, sort_keys=False, width=200, default_flow_style=None)


# ------------------------------------------------------------------------------- EMR


def render_emr(
    pipeline: Pipeline,
    env: str = DEFAULT_ENVS["emr"],
    s3_prefix: str = EMR_S3_PREFIX,
    run_date: str = EMR_RUN_DATE,
    settings: Mapping[str, str] | None = None,
) -> str:
    """``aws emr add-steps`` steps (JSON): cluster deploy mode, conf/ shipped as an archive.

    ``s3_prefix`` holds what :func:`write_emr_artifacts` built (``conf.zip``,
    ``mlops_spark.zip``, ``jobs/``); ``settings`` are ``MLOPS_*`` values given to the driver
    (``spark.yarn.appMasterEnv``), e.g. the ``MLOPS_LAKE_ROOT`` that ``conf/emr.yaml`` requires.
    """
    prefix = s3_prefix.rstrip("/")
    submit = ["spark-submit", "--deploy-mode", "cluster", "--archives", f"{prefix}/conf.zip#conf"]
    # In cluster mode the driver runs in a YARN container whose working directory holds the archive as ./conf.
    submit += ["--conf", "spark.yarn.appMasterEnv.MLOPS_CONF_DIR=conf"]
    for name, value in (settings or {}).items():
        submit += ["--conf", f"spark.yarn.appMasterEnv.{name}={value}"]
    submit += ["--py-files", f"{prefix}/mlops_spark.zip"]

    def step(name: str, task: Task, on_failure: str, extra: Sequence[str] = ()) -> dict[str, object]:
        args = [*submit, f"{prefix}/{task.job_file}", *task.argv(env, run_date), *extra]
        return {"Type": "CUSTOM_JAR", "Name": name, "ActionOnFailure": on_failure, "Jar": "command-runner.jar", "Args": args}

    steps = []
    for task in pipeline.daily():
        if task.step == "monitor":
            steps.append(step(f"mlops-spark {task.key} (exit {MONITOR_BREACHED} = alert; the next step still runs)", task, "CONTINUE"))
        else:
            steps.append(step(f"mlops-spark {task.key}", task, "CANCEL_AND_WAIT"))
    steps.append(step("mlops-spark retrain when the k-of-n rule says so", pipeline.retrain(), "CONTINUE"))
    return json.dumps(steps, indent=2) + "\n"


def conf_archive(conf_dir: Path, out: Path) -> Path:
    """``conf.zip`` with the files of ``conf_dir`` at its top level (``base.yaml``, ``emr.yaml``, ``features/`` ...)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(conf_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(conf_dir).as_posix())
    return out


def write_emr_artifacts(out: Path, root: Path = REPO_ROOT) -> list[Path]:
    """What the EMR steps read from S3: ``conf.zip``, ``mlops_spark.zip`` and ``jobs/*.py``.

    Raises:
        ScheduleError: ``root`` is not a checkout (no ``conf/base.yaml`` or ``jobs/``).
    """
    if not (root / "conf" / "base.yaml").is_file() or not (root / "jobs").is_dir():
        raise ScheduleError(f"{root}: not a mlops-spark checkout (needs conf/base.yaml and jobs/)")
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    written = [conf_archive(root / "conf", out / "conf.zip")]
    package = out / "mlops_spark.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / "mlops_spark").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(root).as_posix())
    written.append(package)
    for job in sorted((root / "jobs").glob("*.py")):
        target = out / "jobs" / job.name
        target.write_bytes(job.read_bytes())
        written.append(target)
    return written


# ------------------------------------------------------------------------------ files


def render(pipeline: Pipeline, envs: Mapping[str, str] | None = None) -> dict[Path, str]:
    """The three schedule files (relative path -> text), after checking every task with the CLI parser.

    Raises:
        ScheduleError: a name or env that makes a task the CLI rejects.
    """
    envs = {**DEFAULT_ENVS, **(envs or {})}
    pipeline.check()
    for env in envs.values():
        if not _KEY.match(env.replace("-", "_")):
            raise ScheduleError(f"env '{env}': use letters, digits, - and _ only")
    _check_with_cli([*pipeline.daily(), pipeline.retrain(), pipeline.retrain(when_due=False)], envs["emr"])
    return {
        FILES["airflow"]: render_airflow(pipeline, envs["airflow"]),
        FILES["databricks"]: render_databricks(pipeline, envs["databricks"]),
        FILES["emr"]: render_emr(pipeline, envs["emr"]),
    }


def stale_files(folder: Path, pipeline: Pipeline | None = None) -> list[Path]:
    """Files under ``folder`` that differ from what the generator writes (missing ones included)."""
    rendered = render(pipeline or Pipeline())
    return [rel for rel, text in rendered.items() if not (folder / rel).is_file() or (folder / rel).read_text(encoding="utf-8") != text]


def _pipeline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline names (defaults: the repository's example)")
    for f in dataclasses.fields(Pipeline):
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, dest=f"p_{f.name}", metavar=f.name.upper(), help=f"default {getattr(Pipeline(), f.name)!r}")


def _pipeline(args: argparse.Namespace) -> Pipeline:
    values: dict[str, object] = {}
    for f in dataclasses.fields(Pipeline):
        given = getattr(args, f"p_{f.name}")
        if given is None:
            continue
        if f.name == "entity_keys":
            values[f.name] = tuple(k.strip() for k in given.split(",") if k.strip())
        elif f.name == "horizon_days":
            if not given.isdigit() or int(given) < 1:
                raise ScheduleError(f"--horizon-days {given}: expected a positive number of days")
            values[f.name] = int(given)
        elif f.name == "stream_source" and given in ("", "none"):
            values[f.name] = None
        else:
            values[f.name] = given
    return Pipeline(**values)  # type: ignore[arg-type]


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"MLOPS_[A-Z0-9_]+", name) or not value:
            raise ScheduleError(f"--setting {pair}: expected MLOPS_NAME=VALUE (e.g. MLOPS_LAKE_ROOT=s3a://bucket/lake)")
        out[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m mlops_spark.schedules``."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops_spark.schedules", description="Render the Airflow, Databricks and EMR schedules of the pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write the three schedule files")
    write.add_argument("--out", type=Path, default=REPO_ROOT / "schedules", help="schedules folder (default: the checkout's)")
    for name, env in DEFAULT_ENVS.items():
        write.add_argument(f"--{name}-env", default=env, help=f"settings environment of the {name} tasks (default {env})")
    _pipeline_options(write)
    check = sub.add_parser("check", help="exit 1 when a file in the schedules folder is not what `write` makes of the defaults")
    check.add_argument("--out", type=Path, default=REPO_ROOT / "schedules", help="schedules folder (default: the checkout's)")
    emr = sub.add_parser("emr-steps", help="print EMR steps for one run date, ready for `aws emr add-steps --steps file://...`")
    emr.add_argument("--s3-prefix", required=True, help="where `emr-artifacts` was uploaded: s3://BUCKET/PREFIX")
    emr.add_argument("--run-date", required=True, help="run date, YYYY-MM-DD")
    emr.add_argument("--env", default=DEFAULT_ENVS["emr"], help=f"settings environment (default {DEFAULT_ENVS['emr']})")
    emr.add_argument("--setting", action="append", default=[], metavar="MLOPS_NAME=VALUE", help="a setting for the driver (repeatable)")
    _pipeline_options(emr)
    artifacts = sub.add_parser("emr-artifacts", help="build conf.zip, mlops_spark.zip and jobs/ for `aws s3 sync OUT s3://BUCKET/PREFIX/`")
    artifacts.add_argument("--out", type=Path, required=True, help="folder to write them to")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the generator; errors are one line and exit code 2 (``check``: 1 when files are stale)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "write":
            envs = {name: getattr(args, f"{name}_env") for name in DEFAULT_ENVS}
            for rel, text in render(_pipeline(args), envs).items():
                (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
                (args.out / rel).write_text(text, encoding="utf-8")
                print(args.out / rel)
        elif args.command == "check":
            stale = stale_files(args.out)
            if stale:
                listed = ", ".join(str(p) for p in stale)
                print(f"schedules: {listed} differ from the generator: run `python -m mlops_spark.schedules write`")
                return 1
        elif args.command == "emr-steps":
            if not re.fullmatch(r"s3a?://[^/\s]+(/\S*)?", args.s3_prefix):
                raise ScheduleError(f"--s3-prefix {args.s3_prefix}: expected s3://BUCKET/PREFIX")
            day = resolve_run_date(args.run_date, "").isoformat()
            pipeline = _pipeline(args)
            render(pipeline, {"emr": args.env})  # checks names and options
            sys.stdout.write(render_emr(pipeline, args.env, args.s3_prefix, day, _settings(args.setting)))
        else:
            for path in write_emr_artifacts(args.out):
                print(path)
    except ScheduleError as exc:
        print(f"mlops_spark.schedules: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
