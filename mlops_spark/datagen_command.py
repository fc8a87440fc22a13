"""``mlops-spark datagen``: write synthetic retail transactions to a Delta table or daily Parquet files.

The table is overwritten (same arguments, same rows), so re-running is idempotent;
daily files replace files of the same day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.datagen import DefectSpec, DriftSpec, generate_customers, generate_transactions, write_daily_parquet
from mlops_spark.errors import UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta

log = logging.getLogger(__name__)

APP_NAME = "mlops-spark-datagen"


def _non_negative(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark datagen``."""
    parser.add_argument("--rows", type=_non_negative, default=100_000, help="number of transactions, duplicates included (default 100000)")
    parser.add_argument("--customers", type=_non_negative, default=1_000, help="number of customers, ids 1..N (default 1000)")
    parser.add_argument("--seed", type=_non_negative, default=42, help="random seed; same options, same rows (default 42)")
    parser.add_argument("--start", type=_date, default=dt.date(2024, 1, 1), help="first event day, YYYY-MM-DD (default 2024-01-01)")
    parser.add_argument("--days", type=_non_negative, default=730, help="number of event days (default 730)")
    parser.add_argument(
        "--defects",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="plant the typical defect mix: 1%% null customer ids, 0.5%% negative amounts, 1%% duplicate events, "
        "1.5%% late events (1-3 days), 0.5%% unknown categories (default: --no-defects)",
    )
    parser.add_argument("--drift-from", type=_date, default=None, help="plant drift on events from this day, YYYY-MM-DD (default: none)")
    parser.add_argument("--drift-amount-scale", type=float, default=1.5, help="amount factor of drifted events (default 1.5)")
    parser.add_argument(
        "--drift-category-shift", type=float, default=0.3, help="share of drifted events whose category follows a shifted mix (default 0.3)"
    )
    parser.add_argument("--partitions", type=_non_negative, default=None, help="Spark partitions (output files); never changes the rows")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--table", help="Delta table to (over)write and register, e.g. bronze.generated_transactions")
    target.add_argument("--parquet-dir", help="folder (local or s3a://) of daily files YYYY-MM-DD.parquet by landing_date")
    parser.add_argument("--customers-table", default=None, help="also (over)write the customers with their churn dates to this Delta table")


def overwrite_table(df: DataFrame, name: str, properties: dict[str, str] | None = None) -> None:
    """Replace the rows of Delta table ``name`` with ``df`` (created and registered if new).

    An existing table with the same column names and types is overwritten with
    ``INSERT OVERWRITE``, which leaves the metastore entry alone; ``saveAsTable`` with
    mode overwrite would try to alter the Hive schema of a Delta table, fail and log a
    long stack trace before falling back. Other tables are replaced whole.

    Raises:
        UsageError: the table's database does not exist.
    """
    spark = df.sparkSession
    database = name.split(".")[0] if "." in name else None
    if database and not spark.catalog.databaseExists(database):
        raise UsageError(f"--table {name}: database '{database}' does not exist")
    if delta.table_exists(spark, name) and _same_columns(spark.table(name).schema, df.schema):
        df.write.insertInto(name, overwrite=True)
    else:
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(name)
    if properties:
        delta.set_properties(spark, name, properties)


def _same_columns(a: T.StructType, b: T.StructType) -> bool:
    return [(f.name, f.dataType) for f in a.fields] == [(f.name, f.dataType) for f in b.fields]


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Generate and write; prints one summary line.

    Raises:
        UsageError: a bad table name, a missing database or inconsistent sizes.
    """
    from mlops_spark.spark.session import get_spark

    for name in (args.table, args.customers_table):
        if name:
            delta.quote_table(name)
    defects = DefectSpec.typical() if args.defects else None
    drift = DriftSpec(args.drift_from, args.drift_amount_scale, args.drift_category_shift) if args.drift_from else None
    spark = get_spark(settings, app_name=APP_NAME)
    df = generate_transactions(
        spark,
        rows=args.rows,
        customers=args.customers,
        seed=args.seed,
        start=args.start,
        days=args.days,
        defects=defects,
        drift=drift,
        partitions=args.partitions or None,
    )
    properties = {
        "mlops.datagen.rows": str(args.rows),
        "mlops.datagen.customers": str(args.customers),
        "mlops.datagen.seed": str(args.seed),
        "mlops.datagen.start": args.start.isoformat(),
        "mlops.datagen.days": str(args.days),
        "mlops.datagen.defects": str(bool(args.defects)).lower(),
        "mlops.datagen.drift_from": args.drift_from.isoformat() if args.drift_from else "",
    }
    log.info("generating transactions", extra=fields(**properties, target=args.table or args.parquet_dir))
    began = time.perf_counter()
    if args.table:
        overwrite_table(df, args.table, properties)
        target = f"table {args.table}"
    else:
        files = write_daily_parquet(df, args.parquet_dir)
        target = f"{len(files)} daily files in {args.parquet_dir}"
    seconds = time.perf_counter() - began
    log.info("wrote transactions", extra=fields(rows=args.rows, target=target, seconds=round(seconds, 3)))
    if args.customers_table:
        customers = generate_customers(spark, args.customers, seed=args.seed, start=args.start, days=args.days)
        overwrite_table(customers, args.customers_table, {k: v for k, v in properties.items() if "rows" not in k})
        log.info("wrote customers", extra=fields(customers=args.customers, table=args.customers_table))
    print(f"datagen: {args.rows} transactions of {args.customers} customers (seed {args.seed}) -> {target} in {seconds:.1f}s")
    return 0
