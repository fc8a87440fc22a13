"""The schedules run the real CLI: every task of the Airflow DAG, the Databricks bundle and
the EMR steps is parsed by ``mlops_spark.cli.build_parser``, the environment each one names
loads, and the task order is the pipeline's. Airflow is not a project dependency: the DAG
file runs against a stand-in ``airflow`` package that records operators and edges."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import shlex
import sys
import types
import zipfile
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from mlops_spark.cli import build_parser
from mlops_spark.config import load_settings
from mlops_spark.errors import ConfigError, MonitoringAlert
from mlops_spark.schedules import (
    MONITOR_BREACHED,
    Pipeline,
    ScheduleError,
    main,
    render,
    resolve_run_date,
    stale_files,
    write_emr_artifacts,
)
from tests.support import REPO_ROOT

SCHEDULES = REPO_ROOT / "schedules"
DAY = "2024-06-01"
# The pipeline of the demo, in order (task ids).
DAILY = ["ingest", "ingest_stream", "validate", "features", "labels", "training_set", "train", "score", "monitor"]
# The values the repository's envs leave to the environment (conf/<env>.yaml says which).
REQUIRED = {
    "databricks": {"MLOPS_LAKE_ROOT": "s3://bucket/lake", "MLOPS_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092"},
    "emr": {
        "MLOPS_LAKE_ROOT": "s3a://bucket/lake",
        "MLOPS_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",
        "MLOPS_MLFLOW__TRACKING_URI": "http://mlflow:5000",
    },
}


def parse(argv: list[str], where: str):
    """The CLI's namespace for ``argv`` (step first), or a test failure naming the task."""
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: the CLI rejects `mlops-spark {' '.join(argv)}`: {err.getvalue().strip().splitlines()[-1]}")


# ----------------------------------------------------------------------------- Airflow


class _Operator:
    def __init__(self, dag: _Dag, **kwargs: object) -> None:
        self.kwargs, self.task_id, self.dag = kwargs, str(kwargs["task_id"]), dag
        dag.tasks[self.task_id] = self

    def __rshift__(self, other):
        for o in other if isinstance(other, list) else [other]:
            self.dag.edges.add((self.task_id, o.task_id))
        return other


class _Dag:
    current: _Dag | None = None

    def __init__(self, dag_id: str, **kwargs: object) -> None:
        self.dag_id, self.kwargs, self.tasks, self.edges = dag_id, kwargs, {}, set()
        DAGS[dag_id] = self

    def __enter__(self) -> _Dag:
        _Dag.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        _Dag.current = None


DAGS: dict[str, _Dag] = {}


def _operator_class(name: str) -> type:
    return type(name, (_Operator,), {"__init__": lambda self, **kw: _Operator.__init__(self, _Dag.current, **kw)})


@pytest.fixture(scope="module")
def airflow() -> types.SimpleNamespace:
    """Run the DAG file with a stand-in ``airflow`` package; its DAGs and module namespace."""
    modules = {
        "airflow": types.ModuleType("airflow"),
        "airflow.providers": types.ModuleType("airflow.providers"),
        "airflow.providers.standard": types.ModuleType("airflow.providers.standard"),
        "airflow.providers.standard.operators": types.ModuleType("airflow.providers.standard.operators"),
    }
    modules["airflow"].DAG = _Dag  # type: ignore[attr-defined]
    for module, cls in (("bash", "BashOperator"), ("empty", "EmptyOperator"), ("python", "BranchPythonOperator")):
        m = types.ModuleType(f"airflow.providers.standard.operators.{module}")
        setattr(m, cls, _operator_class(cls))
        modules[m.__name__] = m
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    DAGS.clear()
    try:
        namespace: dict[str, object] = {"__name__": "mlops_spark_dag"}
        path = SCHEDULES / "airflow" / "mlops_spark_dag.py"
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return types.SimpleNamespace(dags=dict(DAGS), module=namespace)


def _render_jinja(command: str) -> str:
    """What Airflow renders for the templates the DAG uses: {{ ds }} and Variables with their defaults."""
    command = command.replace("{{ ds }}", DAY)
    return re.sub(r"\{\{ var\.value\.get\('[a-z_]+', '([^']*)'\) \}\}", r"\1", command)


def test_airflow_daily_dag_runs_the_pipeline_in_order_then_branches_to_retrain(airflow):
    dag = airflow.dags["mlops_spark_daily"]
    chain = [*DAILY, "retrain_or_not"]
    expected = set(itertools.pairwise(chain)) | {("retrain_or_not", "retrain"), ("retrain_or_not", "no_retrain")}
    assert dag.edges == expected
    assert set(dag.tasks) == {*chain, "retrain", "no_retrain"}


def test_every_airflow_task_is_a_cli_call_with_the_run_date(airflow):
    commands = 0
    for dag in airflow.dags.values():
        for task in dag.tasks.values():
            if "bash_command" not in task.kwargs:
                continue
            words = shlex.split(_render_jinja(str(task.kwargs["bash_command"])).split(";")[0])
            assert words[0] == "/opt/mlops-spark/spark-submit.sh", task.task_id
            assert (REPO_ROOT / "jobs" / f"{words[1].replace('-', '_')}.py").is_file(), f"{task.task_id}: no job file"
            args = parse(words[1:], f"airflow {dag.dag_id}.{task.task_id}")
            assert (str(args.run_date), args.env) == (DAY, "emr"), task.task_id
            commands += 1
    assert commands == len(DAILY) + 2  # the daily steps, retrain when due, weekly retrain


def test_airflow_score_looks_features_up_at_the_end_of_the_run_date_and_retrain_checks_k_of_n(airflow):
    tasks = airflow.dags["mlops_spark_daily"].tasks
    score = parse(shlex.split(_render_jinja(tasks["score"].kwargs["bash_command"]))[1:], "score")
    assert (score.model, score.entities, score.as_of.isoformat()) == (
        "customer_churn@champion",
        "ml.customers_to_score",
        f"{DAY}T23:59:59.999999",
    )
    retrain = parse(shlex.split(_render_jinja(tasks["retrain"].kwargs["bash_command"]))[1:], "retrain")
    assert retrain.when_due and retrain.model == "customer_churn"
    weekly = airflow.dags["mlops_spark_weekly_retrain"].tasks["retrain"]
    assert not parse(shlex.split(_render_jinja(weekly.kwargs["bash_command"]))[1:], "weekly").when_due


def test_airflow_monitor_exit_3_is_the_retrain_branch_and_other_failures_fail(airflow):
    monitor = airflow.dags["mlops_spark_daily"].tasks["monitor"].kwargs
    assert MonitoringAlert.exit_code == MONITOR_BREACHED == airflow.module["MONITOR_BREACHED"]
    assert monitor["do_xcom_push"] is True
    assert (
        'echo "monitor_exit=$rc"' in monitor["bash_command"] and f"[ $rc -ne {MONITOR_BREACHED} ]; then exit $rc" in monitor["bash_command"]
    )
    choose = airflow.module["choose_branch"]
    ti = types.SimpleNamespace(xcom_pull=lambda task_ids: pushed)
    pushed = f"monitor_exit={MONITOR_BREACHED}"
    assert choose(ti=ti) == "retrain"
    pushed = "monitor_exit=0"
    assert choose(ti=ti) == "no_retrain"


# -------------------------------------------------------------------------- Databricks


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load((SCHEDULES / "databricks" / "databricks.yml").read_text(encoding="utf-8"))


def _job(bundle: dict) -> dict:
    return bundle["resources"]["jobs"]["mlops_spark_daily"]


def test_databricks_task_graph_is_the_pipeline_order(bundle):
    tasks = {t["task_key"]: t for t in _job(bundle)["tasks"]}
    chain = ["run_date", *DAILY, "retrain_due"]
    for upstream, downstream in itertools.pairwise(chain):
        assert tasks[downstream]["depends_on"] == [{"task_key": upstream}], downstream
    assert "depends_on" not in tasks["run_date"]
    assert tasks["retrain"]["depends_on"] == [{"task_key": "retrain_due", "outcome": "true"}]
    assert set(tasks) == {*chain, "retrain"}
    cond = tasks["retrain_due"]["condition_task"]
    assert cond == {"op": "EQUAL_TO", "left": "{{tasks.monitor.values.retrain}}", "right": "true"}


def test_every_databricks_job_task_is_a_cli_call_with_the_published_run_date(bundle):
    env = bundle["variables"]["env"]["default"]
    steps = []
    for task in _job(bundle)["tasks"]:
        if "spark_python_task" not in task or task["task_key"] == "run_date":
            continue
        spt = task["spark_python_task"]
        job = (SCHEDULES / "databricks" / spt["python_file"]).resolve()
        assert job.parent == REPO_ROOT / "jobs" and job.is_file(), task["task_key"]
        params = [p.replace("${var.env}", env).replace("{{tasks.run_date.values.run_date}}", DAY) for p in spt["parameters"]]
        args = parse([job.stem.replace("_", "-"), *params], f"databricks {task['task_key']}")
        assert (str(args.run_date), args.env) == (DAY, "databricks")
        steps.append(task["task_key"])
        assert task["job_cluster_key"] in {c["job_cluster_key"] for c in _job(bundle)["job_clusters"]}
    assert steps == [*DAILY, "retrain"]
    monitor = next(t for t in _job(bundle)["tasks"] if t["task_key"] == "monitor")
    assert "--task-values" in monitor["spark_python_task"]["parameters"]


def test_databricks_references_name_defined_variables_parameters_and_upstream_task_values(bundle):
    text = (SCHEDULES / "databricks" / "databricks.yml").read_text(encoding="utf-8")
    variables = set(re.findall(r"\$\{var\.([a-z_]+)\}", text))
    assert variables <= set(bundle["variables"])
    assert {v for v, d in bundle["variables"].items() if "default" not in d} == {"lake_root", "kafka_bootstrap_servers"}
    params = {p["name"] for p in _job(bundle)["parameters"]}
    for ref in set(re.findall(r"\{\{([^}]+)\}\}", text)):
        if ref.startswith("job.parameters."):
            assert ref.removeprefix("job.parameters.") in params
        elif ref.startswith("tasks."):
            assert ref.split(".")[1] in {"run_date", "monitor"}  # both upstream of every task that reads them
        else:
            assert ref == "job.start_time.iso_date"
    run_date = next(t for t in _job(bundle)["tasks"] if t["task_key"] == "run_date")["spark_python_task"]
    assert (SCHEDULES / "databricks" / run_date["python_file"]).is_file()


def test_databricks_run_date_is_the_job_parameter_or_the_day_before_the_run_started():
    assert str(resolve_run_date("", "2024-06-02")) == "2024-06-01"
    assert str(resolve_run_date("", "2024-03-01")) == "2024-02-29"
    assert str(resolve_run_date("2024-05-10", "2024-06-02")) == "2024-05-10"
    with pytest.raises(ScheduleError, match="'2024-13-01' is not a date"):
        resolve_run_date("2024-13-01", "2024-06-02")


def test_databricks_cluster_sets_what_its_env_requires_and_points_at_the_synced_conf(bundle):
    cluster = _job(bundle)["job_clusters"][0]["new_cluster"]
    assert {"spark_version", "node_type_id", "num_workers"} <= cluster.keys()
    env_vars = cluster["spark_env_vars"]
    assert env_vars["MLOPS_CONF_DIR"] == "/Workspace${workspace.file_path}/conf" and "../../conf" in bundle["sync"]["paths"]
    environ = {
        k: v.replace("${var.lake_root}", "s3://b/lake").replace("${var.kafka_bootstrap_servers}", "k:9092") for k, v in env_vars.items()
    }
    settings = load_settings(env=bundle["variables"]["env"]["default"], conf_dir=REPO_ROOT / "conf", environ=environ)
    assert (settings.lake_root, settings.kafka.bootstrap_servers, settings.metastore.kind) == ("s3://b/lake", "k:9092", "cluster")


# ------------------------------------------------------------------------------- EMR


def _emr_steps(text: str | None = None) -> list[dict]:
    return json.loads(text if text is not None else (SCHEDULES / "emr" / "steps.json").read_text(encoding="utf-8"))


def _emr_job_args(step: dict) -> tuple[str, list[str]]:
    i = next(i for i, a in enumerate(step["Args"]) if a.endswith(".py"))
    return step["Args"][i].rsplit("/", 1)[1][:-3].replace("_", "-"), step["Args"][i + 1 :]


def test_emr_steps_validate_against_the_add_steps_api_model():
    model = botocore.session.get_session().get_service_model("emr")
    shape = model.operation_model("AddJobFlowSteps").input_shape
    api_steps = [
        {"Name": s["Name"], "ActionOnFailure": s["ActionOnFailure"], "HadoopJarStep": {"Jar": s["Jar"], "Args": s["Args"]}}
        for s in _emr_steps()
    ]
    report = ParamValidator().validate({"JobFlowId": "j-TEST", "Steps": api_steps}, shape)
    assert not report.has_errors(), report.generate_report()


def test_every_emr_step_is_a_cli_call_in_pipeline_order():
    steps = _emr_steps()
    names = []
    for s in steps:
        step, argv = _emr_job_args(s)
        assert (REPO_ROOT / "jobs" / f"{step.replace('-', '_')}.py").is_file()
        args = parse([step, *[a.replace("RUN_DATE", DAY) for a in argv]], s["Name"])
        assert (str(args.run_date), args.env) == (DAY, "emr")
        names.append(s["Name"].split()[1])
    assert names == [*DAILY, "retrain"]
    assert [s["ActionOnFailure"] for s in steps][-2:] == ["CONTINUE", "CONTINUE"]  # monitor exits 3 on an alert
    assert _emr_job_args(steps[-1])[1][:3] == ["--model", "customer_churn", "--when-due"]


def test_emr_steps_run_in_cluster_mode_with_conf_shipped_to_the_driver():
    for s in _emr_steps():
        args = s["Args"]
        assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
        archive = args[args.index("--archives") + 1]
        assert archive.endswith("/conf.zip#conf")
        assert "spark.yarn.appMasterEnv.MLOPS_CONF_DIR=conf" in args


def test_emr_conf_archive_loads_as_the_driver_sees_it(tmp_path, monkeypatch):
    written = write_emr_artifacts(tmp_path / "s3")
    assert {p.relative_to(tmp_path / "s3").as_posix() for p in written} >= {"conf.zip", "mlops_spark.zip", "jobs/score.py"}
    with zipfile.ZipFile(tmp_path / "s3" / "conf.zip") as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "container" / "conf")  # YARN: --archives conf.zip#conf in the container's working dir
    assert names == {p.relative_to(REPO_ROOT / "conf").as_posix() for p in (REPO_ROOT / "conf").rglob("*") if p.is_file()}
    with zipfile.ZipFile(tmp_path / "s3" / "mlops_spark.zip") as zf:
        assert {"mlops_spark/cli.py", "mlops_spark/spark/log4j2.properties"} <= set(zf.namelist())
    monkeypatch.chdir(tmp_path / "container")
    monkeypatch.setenv("MLOPS_CONF_DIR", "conf")  # spark.yarn.appMasterEnv.MLOPS_CONF_DIR=conf
    settings = load_settings(env="emr", environ=REQUIRED["emr"])
    assert (settings.env, settings.metastore.kind, settings.mlflow.tracking_uri) == ("emr", "glue", "http://mlflow:5000")


def test_emr_steps_command_fills_the_run_date_bucket_and_driver_settings(capsys):
    code = main(
        ["emr-steps", "--s3-prefix", "s3://my-bucket/mlops", "--run-date", DAY, "--setting", "MLOPS_LAKE_ROOT=s3a://my-bucket/lake"]
    )
    assert code == 0
    steps = _emr_steps(capsys.readouterr().out)
    for s in steps:
        assert "RUN_DATE" not in s["Args"] and not any("CHANGE-ME" in a for a in s["Args"])
        assert "spark.yarn.appMasterEnv.MLOPS_LAKE_ROOT=s3a://my-bucket/lake" in s["Args"]
        step, argv = _emr_job_args(s)
        assert str(parse([step, *argv], s["Name"]).run_date) == DAY
    assert "s3://my-bucket/mlops/jobs/ingest.py" in steps[0]["Args"] and "s3://my-bucket/mlops/conf.zip#conf" in steps[0]["Args"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run-date", "2024-06-31"], "run date '2024-06-31' is not a date"),
        (["--run-date", DAY, "--setting", "LAKE=x"], "--setting LAKE=x: expected MLOPS_NAME=VALUE"),
        (["--run-date", DAY, "--s3-prefix", "bucket/x"], "--s3-prefix bucket/x: expected s3://BUCKET/PREFIX"),
    ],
)
def test_emr_steps_command_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    base = ["emr-steps", "--s3-prefix", "s3://b/p"]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# ------------------------------------------------------------------- environments


def test_every_env_a_schedule_names_loads_with_its_required_values(airflow, bundle):
    named = {
        re.search(r"mlops_spark_env', '([^']+)'", airflow.module["COMMON"])[1],
        bundle["variables"]["env"]["default"],
        *(_emr_job_args(s)[1][_emr_job_args(s)[1].index("--env") + 1] for s in _emr_steps()),
    }
    assert named == {"emr", "databricks"}
    for env in named:
        assert load_settings(env=env, conf_dir=REPO_ROOT / "conf", environ=REQUIRED[env]).env == env
        for missing in REQUIRED[env]:
            environ = {k: v for k, v in REQUIRED[env].items() if k != missing}
            key = missing.removeprefix("MLOPS_").lower().replace("__", ".")
            with pytest.raises(ConfigError, match=rf"^{re.escape(str(REPO_ROOT / 'conf' / env))}\.yaml: {key}: .*set {missing}"):
                load_settings(env=env, conf_dir=REPO_ROOT / "conf", environ=environ)


@pytest.mark.parametrize("env", ["databricks", "emr"])
def test_env_retrain_loop_is_the_daily_pipeline_and_the_cli_accepts_it(env):
    settings = load_settings(env=env, conf_dir=REPO_ROOT / "conf", environ=REQUIRED[env])
    loop = [{"step": s.step, "args": s.args} for s in settings.monitoring.retrain_steps]
    assert loop == Pipeline().retrain_loop()
    assert [s["step"] for s in loop] == ["ingest", "ingest", "validate", "features", "training-set", "train", "score"]
    for s in loop:
        parse([s["step"], *s["args"], "--run-date", DAY], f"{env} retrain_steps {s['step']}")
    assert settings.monitoring.model == Pipeline().model


# ---------------------------------------------------------------------- generator


def test_committed_schedules_are_what_the_generator_writes():
    assert stale_files(SCHEDULES) == []


def test_pipeline_names_are_generator_options(tmp_path):
    assert (
        main(["write", "--out", str(tmp_path), "--model", "churn_v2", "--entities", "crm.active_customers", "--stream-source", "none"]) == 0
    )
    text = {rel: (tmp_path / rel).read_text(encoding="utf-8") for rel in render(Pipeline())}
    steps = _emr_steps(text[Path("emr") / "steps.json"])
    assert [s["Name"].split()[1] for s in steps] == [t for t in DAILY if t != "ingest_stream"] + ["retrain"]
    step, argv = _emr_job_args(next(s for s in steps if s["Name"] == "mlops-spark score"))
    score = parse([step, *[a.replace("RUN_DATE", DAY) for a in argv]], "score")
    assert (score.model, score.entities) == ("churn_v2@champion", "crm.active_customers")
    for rel, body in text.items():
        assert "customer_churn@" not in body and "transactions_stream" not in body, rel


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "churn; rm -rf /"], "pipeline model 'churn; rm -rf /': use letters"),
        (["--entity-keys", ","], "task labels: the CLI rejects"),
        (["--horizon-days", "0"], "--horizon-days 0: expected a positive number of days"),
    ],
)
def test_generator_bad_names_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main(["write", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())
