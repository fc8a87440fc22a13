"""Schema contracts checked where stages meet."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from mlops_spark.errors import SchemaMismatchError


def schema_differences(actual: T.StructType, expected: T.StructType) -> list[str]:
    """Human-readable differences: missing columns, unexpected columns, type changes."""
    have = {f.name: f.dataType for f in actual.fields}
    want = {f.name: f.dataType for f in expected.fields}
    problems = [f"missing column {n} ({t.simpleString()})" for n, t in want.items() if n not in have]
    problems += [f"unexpected column {n}" for n in have if n not in want]
    problems += [
        f"column {n} is {have[n].simpleString()}, expected {t.simpleString()}" for n, t in want.items() if n in have and have[n] != t
    ]
    return problems


def check_schema(df: DataFrame, expected: T.StructType, where: str, allow_extra: bool = False) -> None:
    """Raise when ``df`` does not have ``expected``'s columns and types.

    Raises:
        SchemaMismatchError: one line naming ``where`` and every difference.
    """
    problems = schema_differences(df.schema, expected)
    if allow_extra:
        problems = [p for p in problems if not p.startswith("unexpected")]
    if problems:
        raise SchemaMismatchError(f"{where}: " + "; ".join(problems))
