"""The schedule definitions: the Airflow DAG file (parsed: Airflow is not a project
dependency), the Databricks bundle and the EMR steps (checked against the EMR API model
botocore ships, which is what `aws emr add-steps` validates against)."""

from __future__ import annotations

import ast
import json
import re

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from tests.support import REPO_ROOT

SCHEDULES = REPO_ROOT / "schedules"
STEPS = ["ingest", "validate", "features", "training-set", "score", "monitor", "retrain"]
JOB_FILES = {p.stem for p in (REPO_ROOT / "jobs").glob("*.py")}


def _dag_tree() -> ast.Module:
    return ast.parse((SCHEDULES / "airflow" / "mlops_spark_dag.py").read_text())


def _operators(tree: ast.Module) -> dict[str, ast.Call]:
    ops = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.endswith("Operator"):
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(kw.get("task_id"), ast.Constant):
                ops.setdefault(kw["task_id"].value, node)
    return ops


def test_airflow_dag_chains_every_step_then_branches_monitor_to_retrain():
    tree = _dag_tree()
    chain = next(
        n.value for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.BinOp) and isinstance(n.value.op, ast.RShift)
    )
    order: list[str] = []
    node = chain
    while isinstance(node, ast.BinOp):
        right = node.right
        order.insert(0, ast.unparse(right))
        node = node.left
    order.insert(0, ast.unparse(node))
    assert order == ["ingest", "validate", "features", "training_set", "score", "monitor", "branch", "[retrain, no_retrain]"]


def test_airflow_tasks_submit_existing_job_files_with_the_run_date():
    ops = _operators(_dag_tree())
    calls = [ast.unparse(op) for op in ops.values() if isinstance(op.func, ast.Name) and op.func.id == "BashOperator"]
    submitted = {m for c in calls for m in re.findall(r"submit\('([a-z-]+)'", c)}
    assert submitted == set(STEPS)
    assert {s.replace("-", "_") for s in submitted} <= JOB_FILES
    source = (SCHEDULES / "airflow" / "mlops_spark_dag.py").read_text()
    assert "--run-date {{ ds }}" in source and '"retries": 2' in source


def test_airflow_monitor_task_treats_exit_3_as_the_branch_signal_not_a_failure():
    monitor = ast.unparse(_operators(_dag_tree())["monitor"])
    assert "monitor_exit=$rc" in monitor and "$rc -ne {MONITOR_BREACHED}" in monitor and "do_xcom_push=True" in monitor


def test_airflow_dag_compiles():
    compile((SCHEDULES / "airflow" / "mlops_spark_dag.py").read_text(), "mlops_spark_dag.py", "exec")


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load((SCHEDULES / "databricks" / "bundle.yml").read_text())


def test_databricks_bundle_has_one_task_per_step_and_a_condition_task(bundle):
    tasks = bundle["resources"]["jobs"]["mlops_spark_daily"]["tasks"]
    keys = [t["task_key"] for t in tasks]
    assert len(keys) == len(set(keys))
    kinds = {t["task_key"]: next(k for k in t if k.endswith("_task")) for t in tasks}
    assert kinds.pop("retrain_due") == "condition_task"
    assert set(kinds.values()) == {"spark_python_task"}
    assert {t["spark_python_task"]["python_file"].rsplit("/", 1)[1][:-3] for t in tasks if "spark_python_task" in t} == {
        s.replace("-", "_") for s in STEPS
    }


def test_databricks_tasks_depend_only_on_existing_tasks_and_retrain_on_the_true_outcome(bundle):
    tasks = bundle["resources"]["jobs"]["mlops_spark_daily"]["tasks"]
    keys = {t["task_key"] for t in tasks}
    for t in tasks:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,100}", t["task_key"])
        assert {d["task_key"] for d in t.get("depends_on", [])} <= keys
        if "spark_python_task" in t:
            assert t["job_cluster_key"] in {c["job_cluster_key"] for c in bundle["resources"]["jobs"]["mlops_spark_daily"]["job_clusters"]}
    cond = next(t for t in tasks if t["task_key"] == "retrain_due")["condition_task"]
    assert cond["op"] in {"EQUAL_TO", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL"}
    assert {"left", "right"} <= cond.keys()
    retrain = next(t for t in tasks if t["task_key"] == "retrain")
    assert retrain["depends_on"] == [{"task_key": "retrain_due", "outcome": "true"}]


def test_databricks_job_clusters_name_a_runtime_and_node_type(bundle):
    for cluster in bundle["resources"]["jobs"]["mlops_spark_daily"]["job_clusters"]:
        assert {"spark_version", "node_type_id", "num_workers"} <= cluster["new_cluster"].keys()


def _emr_steps() -> list[dict]:
    return json.loads((SCHEDULES / "emr" / "steps.json").read_text())


def test_emr_steps_validate_against_the_add_steps_api_model():
    model = botocore.session.get_session().get_service_model("emr")
    shape = model.operation_model("AddJobFlowSteps").input_shape
    api_steps = [
        {"Name": s["Name"], "ActionOnFailure": s["ActionOnFailure"], "HadoopJarStep": {"Jar": s["Jar"], "Args": s["Args"]}}
        for s in _emr_steps()
    ]
    report = ParamValidator().validate({"JobFlowId": "j-TEST", "Steps": api_steps}, shape)
    assert not report.has_errors(), report.generate_report()


def test_emr_steps_use_the_cli_keys_and_run_every_step_in_order():
    steps = _emr_steps()
    assert all(set(s) == {"Type", "Name", "ActionOnFailure", "Jar", "Args"} and s["Type"] == "CUSTOM_JAR" for s in steps)
    jobs = [next(a for a in s["Args"] if a.endswith(".py")).rsplit("/", 1)[1][:-3] for s in steps]
    assert jobs == [s.replace("-", "_") for s in STEPS]
    monitor = steps[jobs.index("monitor")]
    assert monitor["ActionOnFailure"] == "CONTINUE" and "--when-due" in steps[-1]["Args"]
