"""``mlops-spark sql-server``: the Spark Thrift Server over the lake's metastore.

Analysts connect any JDBC/ODBC client (beeline, DBeaver, PyHive) to
``jdbc:hive2://<host>:<port>/default`` and query ``features.*``, ``ml.*`` by name.
The server is PySpark's own ``HiveThriftServer2`` started through spark-submit
with the very conf the session factory builds (Delta, metastore, jars), so it
sees exactly the tables the pipelines registered.

With the embedded Derby metastore only one JVM may open it: stop other Spark
processes on the same lake first, or use a shared metastore (``metastore.kind: jdbc``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from mlops_spark.config.settings import Settings
from mlops_spark.log import fields
from mlops_spark.spark.session import session_conf

log = logging.getLogger(__name__)

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark sql-server``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=10000, help="Thrift (JDBC/ODBC) port (default 10000)")
    parser.add_argument("--dry-run", action="store_true", help="print the spark-submit command (secrets masked) and exit")


def _spark_submit() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "bin" / "spark-submit"


def write_properties(conf: dict[str, str], folder: Path) -> Path:
    """Write ``conf`` as a Spark properties file readable only by this user.

    A file instead of ``--conf`` flags keeps passwords out of the process list.
    """
    path = folder / "spark-sql-server.properties"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for key, value in sorted(conf.items()):
            escaped = value.replace("\\", "\\\\").replace("\n", "\\n")
            fh.write(f"{key}={escaped}\n")
    return path


def thrift_server_command(properties: Path, host: str, port: int) -> list[str]:
    """The spark-submit command line that starts the Thrift server."""
    return [
        str(_spark_submit()),
        "--class", THRIFT_SERVER_CLASS,
        "--name", "mlops-spark-sql-server",
        "--properties-file", str(properties),
        "spark-internal",
        "--hiveconf", f"hive.server2.thrift.bind.host={host}",
        "--hiveconf", f"hive.server2.thrift.port={port}",
    ]  # fmt: skip


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Start the Thrift server in the foreground; Ctrl-C (SIGINT) or SIGTERM stops it."""
    conf = session_conf(settings)
    conf["spark.app.name"] = "mlops-spark-sql-server"
    if conf.get("spark.jars"):
        # The Thrift server resolves the Delta catalog through Hive's session class loader,
        # which only sees the JVM's own class path, not jars added with spark.jars.
        own = [conf["spark.driver.extraClassPath"]] if conf.get("spark.driver.extraClassPath") else []
        conf["spark.driver.extraClassPath"] = os.pathsep.join([*own, *conf["spark.jars"].split(",")])
    with tempfile.TemporaryDirectory(prefix="mlops-sql-server-") as tmp:
        cmd = thrift_server_command(write_properties(conf, Path(tmp)), args.host, args.port)
        if args.dry_run:
            print(" ".join(cmd))
            return 0
        url = f"jdbc:hive2://{args.host}:{args.port}/default"
        log.info("starting spark thrift server", extra=fields(url=url, lake_root=settings.lake_root))
        print(f"Spark Thrift Server starting; connect with: beeline -u {url}", file=sys.stderr)
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)

        def _stop(signum: int, _frame: object) -> None:
            os.killpg(proc.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        code = proc.wait()
        # SIGTERM from us is a clean stop, not a failure.
        return 0 if code in (0, -signal.SIGTERM, 143) else code
