"""Typed errors. The CLI turns each into one line on stderr and its exit code.

User errors (bad config, bad input, unknown model) never show a traceback; bugs do.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base of every error the platform raises on purpose.

    Attributes:
        exit_code: the process exit code the CLI uses for this error.
    """

    exit_code: int = 1
    label: str = "error"
    """The word the CLI puts before the message (``mlops-spark <step>: <label>: <message>``)."""


class ConfigError(MlopsError):
    """A settings file, environment variable or definition file is wrong."""

    exit_code = 2


class UsageError(MlopsError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class NotImplementedStep(MlopsError):
    """A CLI step whose issue has not landed yet."""

    exit_code = 2


class DataQualityError(MlopsError):
    """A data-quality rule with action `fail` failed; nothing was written downstream."""

    exit_code = 1


class SchemaMismatchError(MlopsError):
    """A DataFrame or table does not have the schema a stage expects."""

    exit_code = 2


class ModelNotFoundError(MlopsError):
    """A registered model, version or alias does not exist."""

    exit_code = 2


class MissingDependencyError(MlopsError):
    """A JVM or system dependency (jars, Java) is missing on this machine."""

    exit_code = 2


class MonitoringAlert(MlopsError):
    """Monitoring thresholds breached; exit code 3 lets orchestrators branch on it.

    The step did its work (metrics, report, alert written): the CLI says ``alert:``, not ``error:``."""

    exit_code = 3
    label = "alert"
