"""``mlops-spark demo``: generate a retail data set and run every step end to end.

The demo is a user of the platform like any other: it lands generated data as daily
Parquet files, then runs each step through the same entry point as the
``mlops-spark <step>`` command (same settings, same code), times it and ends with a
summary of what is in the lake. Steps whose issue has not landed yet are reported
as missing and skipped, with the steps that depend on them.

Re-running the demo is safe: the generator is deterministic and files already landed
are not written again, and every step is idempotent for its run date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_spark.config.settings import Settings, is_remote, join_path
from mlops_spark.log import fields

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SIZES = {
    # name: (transactions, customers, days). The last day of each size closes a weekly
    # snapshot period of customer_spend (a Wednesday: 7-day periods count from Thursday
    # 1970-01-01), so scoring and monitoring see the features of the very last day.
    "small": (60_000, 2_000, 367),
    "default": (2_000_000, 50_000, 731),
    "large": (20_000_000, 500_000, 731),
}
START = dt.date(2024, 1, 1)
SOURCE, FEATURE_SET, TRAINING_SET, MODEL = "transactions", "customer_spend", "customer_churn", "customer_churn"


@dataclass
class DemoContext:
    """What the stages share."""

    settings: Settings
    common: list[str]
    start: dt.date
    end: dt.date
    rows: int
    customers: int
    seed: int
    results: dict[str, str] = field(default_factory=dict)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark demo``."""
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="default",
        help="data size: small (60k transactions over a year, 2-3 minutes on 2 cores), "
        "default (2M transactions of 50k customers over two years), large (20M)",
    )  # fmt: skip
    parser.add_argument("--rows", type=_positive, help="transactions to generate (overrides --size)")
    parser.add_argument("--customers", type=_positive, help="customers to generate (overrides --size)")
    parser.add_argument("--days", type=_positive, help="days of history from 2024-01-01 (overrides --size; at least 151 for churn labels)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (default 42): same seed, same data")
    parser.add_argument("--until", default=None, help="run the stages up to and including this one (e.g. features)")


def _step_available(name: str) -> bool:
    from mlops_spark.cli import STEPS

    return any(s.name == name and s.module for s in STEPS)


def _cli(ctx: DemoContext, *argv: str) -> None:
    """Run one step through the CLI entry point; a non-zero exit stops the demo."""
    from mlops_spark.cli import main
    from mlops_spark.errors import MlopsError

    code = main([*argv, *ctx.common])
    if code != 0:
        raise MlopsError(f"step '{argv[0]}' exited with code {code}; fix it and re-run `mlops-spark demo` (steps are idempotent)")


def stage_land(ctx: DemoContext, spark: SparkSession) -> None:
    """Generate transactions (with planted defects and drift in the last month) as daily Parquet files."""
    from mlops_spark.datagen import DefectSpec, DriftSpec, generate_transactions, write_daily_parquet

    folder = join_path(str(ctx.settings.landing_root), SOURCE)
    if not is_remote(folder) and Path(folder).is_dir() and any(Path(folder).glob("*.parquet")):
        ctx.results["land"] = f"{sum(1 for _ in Path(folder).glob('*.parquet'))} daily files already in {folder}"
        return
    drift = DriftSpec(start=ctx.end - dt.timedelta(days=30))
    df = generate_transactions(
        spark, rows=ctx.rows, customers=ctx.customers, seed=ctx.seed, start=ctx.start,
        days=(ctx.end - ctx.start).days + 1, defects=DefectSpec.typical(), drift=drift,
    )  # fmt: skip
    files = write_daily_parquet(df, folder)
    ctx.results["land"] = f"{len(files)} daily files, {ctx.rows:,} transactions of {ctx.customers:,} customers in {folder}"


def stage_ingest(ctx: DemoContext, spark: SparkSession) -> None:
    """Parquet landing folder -> bronze.transactions."""
    _cli(ctx, "ingest", "--source", SOURCE)


STREAM_SOURCE, STREAM_DAYS = "transactions_stream", 14
# Messages the stream ingestion must quarantine (with their raw bytes and reason): not JSON,
# a wrongly typed field, a required field missing. Ten of each.
BAD_MESSAGES = (
    [f"not json {i}" for i in range(10)]
    + [f'{{"transaction_id": "bad-type-{i}", "event_ts": "2024-06-01T10:00:00Z", "amount": "ten"}}' for i in range(10)]
    + [f'{{"transaction_id": "no-time-{i}", "amount": 12.5}}' for i in range(10)]
)


def stage_stream(ctx: DemoContext, spark: SparkSession) -> None:
    """The last two weeks as JSON messages on a local Kafka broker -> bronze.transactions_stream.

    The broker keeps its data under ``<lake_root>/_kafka`` so a re-run finds the messages
    already produced (and the stream's checkpoint finds them already ingested).
    """
    import os

    from pyspark.sql import functions as F

    from mlops_spark.errors import ConfigError
    from mlops_spark.ingest.kafka_spec import KafkaSource
    from mlops_spark.ingest.sources import load_source
    from mlops_spark.local.kafka_broker import create_topic, start_broker, topic_end_offsets

    if is_remote(str(ctx.settings.lake_root)):
        ctx.results["stream"] = "skipped: the local Kafka broker keeps its data under a local lake root only"
        return
    source = load_source(STREAM_SOURCE, ctx.settings)
    if not isinstance(source, KafkaSource):
        raise ConfigError(f"source '{STREAM_SOURCE}' must be kind: kafka for the demo's stream stage")
    topic = source.topics[0]
    with start_broker(log_dir=Path(str(ctx.settings.lake_root)) / "_kafka") as broker:
        create_topic(broker.bootstrap_servers, topic, partitions=2)
        produced = sum(topic_end_offsets(broker.bootstrap_servers, topic).values())
        if produced == 0:
            since = dt.datetime.combine(ctx.end - dt.timedelta(days=STREAM_DAYS - 1), dt.time())
            landed = spark.read.parquet(join_path(str(ctx.settings.landing_root), SOURCE)).where(F.col("event_ts") >= F.lit(since))
            good = landed.select(
                F.col("transaction_id").alias("key"),
                F.to_json(F.struct(*[c for c in landed.columns if c != "landing_date"])).alias("value"),
            )
            bad = spark.createDataFrame([(None, v) for v in BAD_MESSAGES], "key string, value string")
            messages = good.unionByName(bad)
            messages.write.format("kafka").option("kafka.bootstrap.servers", broker.bootstrap_servers).option("topic", topic).save()
            produced = sum(topic_end_offsets(broker.bootstrap_servers, topic).values())
        previous = os.environ.get("MLOPS_KAFKA__BOOTSTRAP_SERVERS")
        os.environ["MLOPS_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        try:
            _cli(ctx, "ingest", "--source", STREAM_SOURCE, "--mode", "available-now")
        finally:
            if previous is None:
                os.environ.pop("MLOPS_KAFKA__BOOTSTRAP_SERVERS", None)
            else:
                os.environ["MLOPS_KAFKA__BOOTSTRAP_SERVERS"] = previous
    bronze = spark.table(ctx.settings.table("bronze", source.table)).count()
    quarantined = spark.table(ctx.settings.table("quarantine", f"{source.table}_messages")).count()
    ctx.results["stream"] = (
        f"{produced:,} messages on topic '{topic}' (the last {STREAM_DAYS} days and {len(BAD_MESSAGES)} malformed): "
        f"{bronze:,} in {ctx.settings.table('bronze', source.table)}, {quarantined:,} quarantined"
    )
    if bronze + quarantined != produced:
        from mlops_spark.errors import MlopsError

        raise MlopsError(f"stream: {produced} messages produced but {bronze} ingested + {quarantined} quarantined")


def stage_validate(ctx: DemoContext, spark: SparkSession) -> None:
    """bronze.transactions -> silver.transactions + quarantine."""
    _cli(ctx, "validate", "--table", ctx.settings.table("bronze", SOURCE), "--all-dates")


def stage_features(ctx: DemoContext, spark: SparkSession) -> None:
    """silver.transactions -> features.customer_spend (daily snapshots)."""
    _cli(ctx, "features", "--feature-set", FEATURE_SET, "--backfill", ctx.start.isoformat(), ctx.end.isoformat())


def stage_labels(ctx: DemoContext, spark: SparkSession) -> None:
    """Churn labels at monthly cut-offs -> ml.churn_labels (rewritten only when its rows change)."""
    _cli(
        ctx, "labels", "--events-table", ctx.settings.table("silver", SOURCE), "--entity-keys", "customer_id",
        "--event-time", "event_ts", "--horizon-days", "90", "--first-cutoff", (ctx.start + dt.timedelta(days=60)).isoformat(),
        "--output-table", ctx.settings.table("ml", "churn_labels"),
    )  # fmt: skip


def stage_training_set(ctx: DemoContext, spark: SparkSession) -> None:
    """ml.churn_labels + features.customer_spend -> ml.training_set_customer_churn."""
    _cli(ctx, "training-set", "--definition", TRAINING_SET)


def stage_train(ctx: DemoContext, spark: SparkSession) -> None:
    """Train, register, promote by rule."""
    _cli(ctx, "train", "--model", MODEL)
    import mlflow

    from mlops_spark.training import registry

    registry.configure_mlflow(ctx.settings)
    client = mlflow.MlflowClient()
    try:
        champion = client.get_model_version_by_alias(MODEL, "champion")
    except mlflow.exceptions.MlflowException:
        from mlops_spark.errors import MlopsError

        raise MlopsError(
            f"model {MODEL} has no @champion: its first version failed a promotion guard (see ml.model_decisions); "
            "a bigger --size or --customers gives it enough training rows"
        ) from None
    metrics = client.get_run(champion.run_id).data.metrics if champion.run_id else {}
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("test_roc_auc", "test_pr_auc", "test_log_loss") if k in metrics)
    ctx.results["model"] = f"{MODEL} v{champion.version} is @champion (run {champion.run_id}): {shown or 'no test metrics logged'}"


def stage_score(ctx: DemoContext, spark: SparkSession) -> None:
    """Every customer seen in the last 90 days, scored with @champion as of the last day."""
    from pyspark.sql import functions as F

    cutoff = dt.datetime.combine(ctx.end, dt.time()) - dt.timedelta(days=90)
    entities = spark.table(ctx.settings.table("silver", SOURCE)).where(F.col("event_ts") >= F.lit(cutoff)).select("customer_id").distinct()
    entities.write.format("delta").mode("overwrite").saveAsTable(ctx.settings.table("ml", "customers_to_score"))
    # The end of the last day: its daily snapshot is stamped 23:59:59.999999 (windows include their right edge).
    as_of = dt.datetime.combine(ctx.end, dt.time(23, 59, 59, 999999)).isoformat()
    _cli(ctx, "score", "--model", f"{MODEL}@champion", "--entities", ctx.settings.table("ml", "customers_to_score"), "--as-of", as_of)


def stage_monitor(ctx: DemoContext, spark: SparkSession) -> None:
    """Drift of the last week's features against the champion's training set."""
    from mlops_spark.cli import main

    code = main(["monitor", "--model", MODEL, *ctx.common])
    ctx.results["monitor"] = "no threshold breached" if code == 0 else f"exit code {code}"
    if code == 3:
        import json

        alert = join_path(str(ctx.settings.reports_root), "alerts", MODEL, f"{ctx.end.isoformat()}.json")
        try:
            breaches = json.loads(Path(alert).read_text())["breaches"]
            listed = ", ".join(f"{b['feature']} {b['metric']} {b['value']:.3f} > {b['threshold']}" for b in breaches)
            ctx.results["monitor"] = f"drift alert (exit code 3), {len(breaches)} breach(es): {listed}; alert {alert}"
        except (OSError, ValueError, KeyError):
            ctx.results["monitor"] = f"drift alert (exit code 3); alert {alert}"
    if code not in (0, 3):
        raise RuntimeError(f"monitor exited with code {code}")


@dataclass(frozen=True)
class Stage:
    """One stage of the demo and the CLI steps it needs."""

    name: str
    run: Callable[[DemoContext, SparkSession], None]
    needs: tuple[str, ...]


STAGES = (
    Stage("land", stage_land, ("datagen",)),
    Stage("ingest", stage_ingest, ("ingest",)),
    Stage("stream", stage_stream, ("ingest",)),
    Stage("validate", stage_validate, ("validate",)),
    Stage("features", stage_features, ("features",)),
    Stage("labels", stage_labels, ("labels",)),
    Stage("training-set", stage_training_set, ("training-set",)),
    Stage("train", stage_train, ("train",)),
    Stage("score", stage_score, ("score",)),
    Stage("monitor", stage_monitor, ("monitor",)),
)


SUMMARY_THREADS = 4
"""Tables counted at once for the summary: each count is a few small Spark jobs (the Delta
log, then the statistics) that leave the driver or a core idle part of the time. The small
demo's 20 tables in a warm session: 4.6 s one at a time, 2.9 s four at a time."""


def _table_lines(spark: SparkSession, name: str, quarantine: bool) -> tuple[str, list[str]]:
    """``name``'s row count line and, for a quarantine table, its rows per reason (top 10)."""
    from pyspark.sql import functions as F

    df = spark.table(name)
    count = f"  {name:<45} {df.count():>12,} rows"
    reason_col = next((c for c in ("_failed_rules", "reason", "_error", "error") if c in df.columns), None) if quarantine else None
    if reason_col is None:
        return count, []
    col = F.explode(reason_col) if dict(df.dtypes)[reason_col].startswith("array") else F.col(reason_col)
    rows = df.select(col.alias("reason")).groupBy("reason").count().orderBy(F.desc("count"), "reason").limit(10).collect()
    return count, [f"  quarantine {name}: {r['count']:,} x {r['reason']}" for r in rows]


def _summary(spark: SparkSession, settings: Settings, ctx: DemoContext) -> list[str]:
    """Tables with row counts, quarantine reasons, where reports and MLflow are."""
    from concurrent.futures import ThreadPoolExecutor

    tables = [f"{db}.{row.tableName}" for db in settings.databases.all() for row in spark.sql(f"SHOW TABLES IN `{db}`").collect()]
    qdb = settings.databases.quarantine
    with ThreadPoolExecutor(SUMMARY_THREADS, thread_name_prefix="demo-summary") as pool:
        per_table = list(pool.map(lambda name: _table_lines(spark, name, name.startswith(f"{qdb}.")), tables))
    lines = ["", "Tables (query them by name from any Spark session or `mlops-spark sql-server`):"]
    lines += [count for count, _ in per_table]
    lines += [line for _, reasons in per_table for line in reasons]
    for stage, text in ctx.results.items():
        lines.append(f"  {stage}: {text}")
    lines += [
        "",
        f"Reports (HTML, alerts): {settings.reports_root}",
        f"MLflow UI: mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}   (then open http://127.0.0.1:5000)",
    ]
    return lines


C1_MAX_ROWS = 100_000
"""Up to this many transactions the demo's session compiles with C1 only (``spark.jit``)."""


def demo_session_settings(settings: Settings, rows: int) -> Settings:
    """The settings the demo starts its session with: ``spark.jit: c1`` for small data, unless set.

    The steps run in that session (they reuse it), so they all get its JVM.
    """
    if rows > C1_MAX_ROWS or "jit" in settings.spark.model_fields_set:
        return settings
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"jit": "c1"})})


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run every available stage in order; print a summary."""
    from mlops_spark.spark.session import get_spark

    rows, customers, days = SIZES[args.size]
    rows, customers, days = args.rows or rows, args.customers or customers, args.days or days
    if days < 151:
        from mlops_spark.errors import UsageError

        raise UsageError(f"--days {days}: churn labels need at least 151 days (60 before the first cut-off, 90 after it)")
    common = ["--plain-logs"] if args.plain_logs else []
    for flag, value in (("--env", args.env), ("--conf", args.conf), ("--conf-dir", args.conf_dir)):
        if value:
            common += [flag, str(value)]
    end = START + dt.timedelta(days=days - 1)
    common += ["--run-date", end.isoformat()]
    ctx = DemoContext(settings, common, START, end, rows, customers, args.seed)
    spark = get_spark(demo_session_settings(settings, rows), app_name="mlops-spark-demo")
    stages = list(STAGES)
    if args.until:
        names = [s.name for s in stages]
        if args.until not in names:
            from mlops_spark.errors import UsageError

            raise UsageError(f"--until: unknown stage '{args.until}' (stages: {', '.join(names)})")
        stages = stages[: names.index(args.until) + 1]
    missing: list[str] = []
    began = time.monotonic()
    for i, stage in enumerate(stages, 1):
        absent = [n for n in stage.needs if not _step_available(n)]
        if absent or missing:
            missing.append(stage.name)
            print(f"[{i}/{len(stages)}] {stage.name}: skipped (missing: {', '.join(absent) or 'an earlier stage'})", file=sys.stderr)
            continue
        print(f"[{i}/{len(stages)}] {stage.name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        stage.run(ctx, spark)
        seconds = time.monotonic() - t0
        log.info("demo stage done", extra=fields(stage=stage.name, seconds=round(seconds, 1)))
        print(f"[{i}/{len(stages)}] {stage.name} done in {seconds:.1f}s", file=sys.stderr, flush=True)
    size = args.size if (rows, customers, days) == SIZES[args.size] else f"{rows:,} transactions, {customers:,} customers, {days} days"
    lines = [f"mlops-spark demo ({size}): {len(stages) - len(missing)} stages in {time.monotonic() - began:.0f}s"]
    if missing:
        lines.append(f"Not run yet (their steps are not built): {', '.join(missing)}")
    lines += _summary(spark, settings, ctx)
    print("\n".join(lines))
    return 0
