"""Typed settings: conf/base.yaml, then conf/<env>.yaml, then an optional --conf file,
then MLOPS_* environment variables, in rising precedence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_spark.config.loader import load_settings
    from mlops_spark.config.settings import Settings

__all__ = ["Settings", "load_settings"]


def __getattr__(name: str) -> Any:
    # Imported lazily: step packages define their settings sections on
    # mlops_spark.config.base, and settings.py imports those sections, so importing a
    # section module first must not load settings.py through this package.
    if name == "load_settings":
        from mlops_spark.config.loader import load_settings

        return load_settings
    if name == "Settings":
        from mlops_spark.config.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
