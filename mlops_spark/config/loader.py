"""Load :class:`Settings` from YAML layers and the environment, with errors that name their source.

Precedence, lowest first: ``conf/base.yaml``, ``conf/<env>.yaml``, the ``--conf`` file,
``MLOPS_*`` environment variables. A wrong key, a missing value or a bad type raises
:class:`ConfigError` whose one-line message names the key and the file or variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource

from mlops_spark.config.settings import Settings
from mlops_spark.errors import ConfigError

ENV_VAR = "MLOPS_ENV"
CONF_DIR_VAR = "MLOPS_CONF_DIR"
# Variables of spark-submit.sh and the CLI launcher, not settings.
LAUNCHER_VARS = (ENV_VAR, CONF_DIR_VAR, "MLOPS_SPARK_MASTER", "MLOPS_JVM_DEPS", "MLOPS_SPARK_SUBMIT_ARGS")

ENV_LAYER = "environment (MLOPS_*)"

Layer = tuple[str, dict[str, Any]]


def default_conf_dir() -> Path:
    """``$MLOPS_CONF_DIR``, else ``./conf`` when it exists, else the checkout's ``conf/``."""
    if os.environ.get(CONF_DIR_VAR):
        return Path(os.environ[CONF_DIR_VAR])
    if (Path.cwd() / "conf" / "base.yaml").is_file():
        return Path.cwd() / "conf"
    return Path(__file__).resolve().parents[2] / "conf"


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping; an empty file is an empty mapping.

    Raises:
        ConfigError: the file is missing, is not YAML, or is not a mapping at the top.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: settings file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def env_layer(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``MLOPS_*`` variables as a nested dict (``MLOPS_SPARK__MASTER`` -> spark.master)."""
    environ = dict(os.environ if environ is None else environ)
    for name in LAUNCHER_VARS:
        environ.pop(name, None)
    source = EnvSettingsSource(Settings, env_prefix="MLOPS_", env_nested_delimiter="__", case_sensitive=False)
    source.env_vars = {k.lower(): v for k, v in environ.items()}
    try:
        values = source()
    except Exception as exc:  # pydantic-settings raises SettingsError for unparsable JSON values
        raise ConfigError(f"environment: {exc}") from None
    unknown = [k for k in environ if k.upper().startswith("MLOPS_") and k.upper() not in _known_env_names(environ)]
    if unknown:
        raise ConfigError(f"environment: {sorted(unknown)[0]}: unknown setting (see `mlops-spark config show`)")
    return values


def _known_env_names(environ: Mapping[str, str]) -> set[str]:
    names = set()
    for key in environ:
        upper = key.upper()
        if not upper.startswith("MLOPS_"):
            continue
        path = upper.removeprefix("MLOPS_").lower().split("__")
        if _path_exists(Settings, path):
            names.add(upper)
    return names


def _path_exists(model: Any, path: list[str]) -> bool:
    fields = getattr(model, "model_fields", None)
    if not path or fields is None:
        return not path or fields is None
    field = fields.get(path[0])
    if field is None:
        return False
    annotation = field.annotation
    return _path_exists(annotation, path[1:]) if hasattr(annotation, "model_fields") else True


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _source_of(loc: tuple[Any, ...], layers: list[Layer]) -> str:
    """The highest-precedence layer that sets the key at ``loc`` (or its nearest parent)."""
    for depth in range(len(loc), 0, -1):
        for name, data in reversed(layers):
            node: Any = data
            for part in loc[:depth]:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    break
            else:
                return name
    return layers[-1][0] if layers else "settings"


def _describe(err: Mapping[str, Any], layers: list[Layer]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    source = _source_of(loc, layers)
    if source == ENV_LAYER:
        source = "environment: MLOPS_" + "__".join(str(p) for p in loc).upper()
    if kind == "extra_forbidden":
        return f"{source}: {key}: unknown setting"
    if kind == "missing":
        files = ", ".join(name for name, _ in layers if name != ENV_LAYER) or "settings"
        var = "MLOPS_" + "__".join(str(p) for p in loc).upper()
        return f"{key}: required setting is missing (set it in {files} or {var})"
    return f"{source}: {key}: {err['msg']} (got {err.get('input')!r})"


def load_settings(
    env: str | None = None,
    conf_dir: Path | None = None,
    conf_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings of ``env`` from YAML layers, the environment and ``overrides``.

    Args:
        env: environment name; default ``$MLOPS_ENV`` or ``local``.
        conf_dir: folder holding ``base.yaml`` and ``<env>.yaml``; default :func:`default_conf_dir`.
        conf_file: an extra YAML file applied over the environment file (``--conf``).
        overrides: values applied last (the Python API's equivalent of the environment).
        environ: the environment to read ``MLOPS_*`` from; default ``os.environ``.

    Raises:
        ConfigError: one line naming the key and the file or variable at fault.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_VAR) or "local"
    conf_dir = conf_dir or default_conf_dir()
    layers: list[Layer] = [(str(conf_dir / "base.yaml"), read_yaml(conf_dir / "base.yaml"))]
    env_file = conf_dir / f"{env}.yaml"
    if not env_file.is_file():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"{env_file}: no settings for environment '{env}' (known: {', '.join(known)})")
    layers.append((str(env_file), read_yaml(env_file)))
    if conf_file is not None:
        layers.append((str(conf_file), read_yaml(Path(conf_file))))
    layers.append((ENV_LAYER, env_layer(environ)))
    if overrides:
        layers.append(("overrides", dict(overrides)))
    merged: dict[str, Any] = {}
    for _, data in layers:
        merged = deep_merge(merged, data)
    merged.setdefault("env", env)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], layers)) from None
