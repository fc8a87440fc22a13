"""Databricks task `run_date`: publish the run date every later task passes as --run-date.

The job parameter run_date when given (backfill, repair), else the day before the run
started: a run at 02:00 UTC processes the last complete day, as Airflow's {{ ds }} does.
Parameters: --given={{job.parameters.run_date}} --started={{job.start_time.iso_date}}.
"""

import argparse
import sys

from mlops_spark.schedules import ScheduleError, resolve_run_date

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="run_date.py")
    parser.add_argument("--given", default="")
    parser.add_argument("--started", required=True)
    args = parser.parse_args()
    try:
        day = resolve_run_date(args.given, args.started)
    except ScheduleError as exc:
        print(f"run_date: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from databricks.sdk.runtime import dbutils  # type: ignore[import-not-found]

    dbutils.jobs.taskValues.set(key="run_date", value=day.isoformat())
    print(f"run_date={day.isoformat()}")
