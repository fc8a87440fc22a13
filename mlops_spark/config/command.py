"""``mlops-spark config``: print the resolved settings of an environment, secrets masked."""

from __future__ import annotations

import argparse
import json

import yaml

from mlops_spark.config.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark config``."""
    parser.add_argument("action", choices=["show"], help="show: print the resolved settings")
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml", help="output format (default yaml)")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the settings (SecretStr fields print as ``**********``)."""
    data = settings.model_dump(mode="json")
    print(json.dumps(data, indent=2) if args.format == "json" else yaml.safe_dump(data, sort_keys=False), end="")
    return 0
