"""Row rules as column expressions, evaluated together in one pass.

Each rule becomes one boolean *violation* column; all of them sit in a single
``select`` so Spark evaluates every rule in the same scan (a ``unique`` rule adds
one window, i.e. one shuffle, shared by the whole plan). A rule is violated only
when its condition is definitely false, as with SQL ``CHECK`` constraints: a null
value passes ``range``, ``in_set``, ``regex`` and ``expression`` rules, and
``not_null`` rules are how a suite rejects nulls.

Duplicates (``unique``): rows are grouped by the key columns; the first row in
``order_by`` order (ties broken by every other orderable column, nulls first) is
kept and every later one violates the rule, so which copy survives never depends
on partitioning. Rows with a null key column are not duplicates of each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.validate.suite import (
    ExpressionRule,
    InSetRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    RowRule,
    UniqueRule,
)

FAILED_RULES = "_failed_rules"
WARNINGS = "_dq_warnings"
ACTION = "_dq_action"

# Outcome of a row, most severe first: any failed `fail` rule wins over quarantine, etc.
PASS, WARN, QUARANTINE, FAIL = "pass", "warn", "quarantine", "fail"

_UNORDERABLE = (T.MapType, T.ArrayType, T.VariantType) if hasattr(T, "VariantType") else (T.MapType, T.ArrayType)


def _definitely_false(condition: Column) -> Column:
    """True when ``condition`` is false; a null condition (null input) is not a violation."""
    return F.coalesce(~condition, F.lit(False))


def _range_condition(rule: RangeRule) -> Column:
    value = F.col(rule.column)
    condition = F.lit(True)
    if rule.min is not None:
        condition = condition & (value > F.lit(rule.min) if rule.strict_min else value >= F.lit(rule.min))
    if rule.max is not None:
        condition = condition & (value < F.lit(rule.max) if rule.strict_max else value <= F.lit(rule.max))
    return condition


def _unique_violation(rule: UniqueRule, df: DataFrame) -> Column:
    used = set(rule.columns) | set(rule.order_by)
    tie_breakers = [
        F.col(f.name).asc_nulls_first() for f in df.schema.fields if f.name not in used and not isinstance(f.dataType, _UNORDERABLE)
    ]
    order = [F.col(c).asc_nulls_first() for c in rule.order_by] + tie_breakers
    window = Window.partitionBy(*rule.columns).orderBy(*(order or [F.lit(1)])).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    keyed = F.lit(True)
    for column in rule.columns:
        keyed = keyed & F.col(column).isNotNull()
    return keyed & (F.row_number().over(window) > 1)


def violation(rule: RowRule, df: DataFrame) -> Column:
    """The boolean column that is true when a row breaks ``rule`` (never null)."""
    if isinstance(rule, NotNullRule):
        return F.col(rule.column).isNull()
    if isinstance(rule, RangeRule):
        return _definitely_false(_range_condition(rule))
    if isinstance(rule, InSetRule):
        return _definitely_false(F.col(rule.column).isin(list(rule.values)))
    if isinstance(rule, RegexRule):
        matches = F.col(rule.column).rlike(rule.pattern)
        return _definitely_false(matches if rule.must_match else ~matches)
    if isinstance(rule, UniqueRule):
        return _unique_violation(rule, df)
    if isinstance(rule, ExpressionRule):
        return _definitely_false(F.expr(rule.sql))
    raise TypeError(f"unsupported rule {rule!r}")  # the suite model admits no other kind


def _names(rules: Sequence[RowRule], action: str) -> Column | None:
    names = [F.lit(r.name) for r in rules if r.action == action]
    return F.array(*names) if names else None


def _any_of(failed: Column, names: Column | None) -> Column:
    return F.lit(False) if names is None else F.size(F.array_intersect(failed, names)) > 0


def apply_rules(df: DataFrame, rules: Sequence[RowRule]) -> DataFrame:
    """Evaluate every row rule on every row, in one projection.

    Args:
        df: the bronze batch (any columns; the rules' columns must exist).
        rules: row rules of the suite, in suite order.

    Returns:
        ``df``'s columns, then ``_failed_rules`` (array<string>: names of every rule the
        row broke, in suite order, empty when none), ``_dq_warnings`` (array<string>: the
        ``warn`` rules among them) and ``_dq_action`` (string: ``fail``, ``quarantine``,
        ``warn`` or ``pass``, the most severe action of the broken rules).
    """
    columns = df.columns
    if rules:
        failed = F.filter(F.array(*[F.when(violation(r, df), F.lit(r.name)) for r in rules]), lambda name: name.isNotNull())
    else:
        failed = F.array().cast(T.ArrayType(T.StringType()))
    flagged = df.select(*columns, failed.alias(FAILED_RULES))
    failed_col = F.col(FAILED_RULES)
    warn_names = _names(rules, WARN)
    action = (
        F.when(_any_of(failed_col, _names(rules, FAIL)), F.lit(FAIL))
        .when(_any_of(failed_col, _names(rules, QUARANTINE)), F.lit(QUARANTINE))
        .when(_any_of(failed_col, warn_names), F.lit(WARN))
        .otherwise(F.lit(PASS))
    )
    warnings = F.array_intersect(failed_col, warn_names) if warn_names is not None else F.array().cast(T.ArrayType(T.StringType()))
    return flagged.select(*columns, failed_col, warnings.alias(WARNINGS), action.alias(ACTION))


def summarize(flagged: DataFrame, rules: Sequence[RowRule], extra: Sequence[Column] = ()) -> DataFrame:
    """Counts of one validated batch in one aggregate.

    Args:
        flagged: output of :func:`apply_rules`.
        rules: the same rules.
        extra: further aggregate columns computed in the same pass (batch rules).

    Returns:
        One row: ``rows_in``, ``rows_fail``, ``rows_quarantined``, ``rows_warned`` (rows that
        broke a ``warn`` rule, wherever they went), then ``rule_<i>`` (rows that broke the
        i-th rule) and the ``extra`` columns.
    """

    def count_where(condition: Column) -> Column:
        return F.coalesce(F.sum(F.when(condition, F.lit(1)).otherwise(F.lit(0))).cast("long"), F.lit(0).cast("long"))

    return flagged.agg(
        F.count(F.lit(1)).cast("long").alias("rows_in"),
        count_where(F.col(ACTION) == FAIL).alias("rows_fail"),
        count_where(F.col(ACTION) == QUARANTINE).alias("rows_quarantined"),
        count_where(F.size(WARNINGS) > 0).alias("rows_warned"),
        *[count_where(F.array_contains(FAILED_RULES, r.name)).alias(f"rule_{i}") for i, r in enumerate(rules)],
        *extra,
    )
