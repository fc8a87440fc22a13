"""Raw files and independent references shared by the file-ingestion tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

SOURCE_YAML = """
kind: files
landing_path: {landing}
table: {table}
event_time_column: ts
local_time_zone: Europe/London
columns:
  id: string
  ts: timestamp
  qty: {{type: long, nullable: false}}
  price: double
"""

EXPECTED_SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("qty", T.LongType()),
        T.StructField("price", T.DoubleType()),
        T.StructField("_source_file", T.StringType()),
        T.StructField("event_date", T.DateType()),
    ]
)


def raw_table(day: str, n: int = 3, start: int = 0) -> pa.Table:
    """``n`` rows on ``day`` as pandas writes them: wall-clock (NTZ) timestamps, a null price."""
    base = pd.Timestamp(day)
    return pa.table(
        {
            "id": [f"{day}-{start + i}" for i in range(n)],
            "ts": pa.array([(base + pd.Timedelta(minutes=37 * i)).to_pydatetime() for i in range(n)], pa.timestamp("us")),
            "qty": pa.array([i + 1 for i in range(n)], pa.int64()),
            "price": pa.array([None if i == 1 else 2.5 * i for i in range(n)], pa.float64()),
        }
    )


def reference(spark: SparkSession, files: list[Path], uri_of: Callable[[Path], str] = lambda p: f"file:{p}") -> DataFrame:
    """What bronze must hold for ``files``: read with pyarrow, London wall clock -> UTC with pandas.

    ``uri_of`` gives the ``_source_file`` a local copy of a file was ingested under.
    """
    rows = []
    for path in files:
        pdf = pq.read_table(path).to_pandas()
        utc = pdf["ts"].dt.tz_localize("Europe/London").dt.tz_convert("UTC")
        for rec, ts in zip(pdf.itertuples(index=False), utc, strict=True):
            price = None if pd.isna(rec.price) else float(rec.price)
            rows.append((rec.id, ts.to_pydatetime(), int(rec.qty), price, uri_of(path), ts.date()))
    return spark.createDataFrame(rows, EXPECTED_SCHEMA)
