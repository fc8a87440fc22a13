"""Typed settings: conf/base.yaml, then conf/<env>.yaml, then an optional --conf file,
then MLOPS_* environment variables, in rising precedence."""

from mlops_spark.config.loader import load_settings
from mlops_spark.config.settings import Settings

__all__ = ["Settings", "load_settings"]
