"""Structured logging: one JSON object per line on stderr, secrets redacted.

Library code logs with ``logging.getLogger(__name__)`` and passes structured
fields through ``extra={"fields": {...}}``; only the CLI calls :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SECRET_KEY = re.compile(r"(?i)(secret|password|passwd|token|access[._-]?key|credential)")
_SECRET_INLINE = re.compile(r"(?i)((?:secret|password|passwd|token|access[._-]?key)[\w.-]*\s*[=:]\s*)([^\s,;'\"]+)")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@/\s]+)(@)")

REDACTED = "***"


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with secrets replaced by ``***``.

    Dict entries whose key looks like a secret are masked whole; strings have
    ``key=value`` secrets and URL passwords masked.
    """
    if key is not None and _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(rf"\1{REDACTED}\3", value)
        return _SECRET_INLINE.sub(rf"\1{REDACTED}", value)
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg and any fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(redact(fields))
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


def configure(level: str = "INFO", json_logs: bool = True) -> None:
    """Send the ``mlops_spark`` loggers to stderr; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("mlops_spark")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for noisy in ("py4j", "great_expectations", "mlflow", "urllib3", "botocore", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Off Databricks, MLflow warns on every registry call that it cannot reach a workspace.
    logging.getLogger("mlflow.utils.databricks_utils").setLevel(logging.ERROR)


def fields(**kw: Any) -> dict[str, Any]:
    """Shorthand for ``extra=fields(a=1)`` in logging calls."""
    return {"fields": kw}
