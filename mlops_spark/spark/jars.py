"""JVM dependencies: where the jars are, which Maven coordinates they come from.

`jvm/pom.xml` is the single declaration. ``make jars`` copies each profile's
artifacts into ``.jars/<profile>/`` and then calls :func:`prune_provided`, which
removes the transitive jars PySpark already bundles (Hadoop client, Jackson,
Scala, Parquet, ...): two copies of one class on the classpath fail at run time.

Command line (used by the Makefile and spark-submit.sh)::

    python -m mlops_spark.spark.jars prune .jars/spark
    python -m mlops_spark.spark.jars packages      # comma-separated coordinates
    python -m mlops_spark.spark.jars classpath .jars/spark
    python -m mlops_spark.spark.jars build-local-fs .jars/localfs/mlops-spark-localfs.jar
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from mlops_spark.errors import MissingDependencyError

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[^-]*)(?:-(?P<classifier>[A-Za-z][\w.]*))?\.jar$")


def project_root() -> Path:
    """The folder that holds ``mlops_spark/``, ``conf/`` and ``jvm/`` in a checkout."""
    return Path(__file__).resolve().parents[2]


def artifact_id(jar_name: str) -> str:
    """``hadoop-aws-3.5.0.jar`` -> ``hadoop-aws``; names without a version are kept whole."""
    match = _VERSIONED_JAR.match(jar_name)
    return match.group("artifact") if match else jar_name.removesuffix(".jar")


def pyspark_jars_dir() -> Path:
    """The ``jars/`` folder of the installed PySpark."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def prune_provided(jars_dir: Path, provided_dir: Path | None = None) -> list[str]:
    """Delete jars from ``jars_dir`` whose artifact PySpark already ships.

    Returns:
        The names of the deleted jars, sorted.
    """
    provided = {artifact_id(p.name) for p in (provided_dir or pyspark_jars_dir()).glob("*.jar")}
    removed = []
    for jar in sorted(jars_dir.glob("*.jar")):
        if artifact_id(jar.name) in provided:
            jar.unlink()
            removed.append(jar.name)
    return removed


def local_jars(jars_dir: Path) -> list[Path]:
    """The jars in ``jars_dir``.

    Raises:
        MissingDependencyError: the folder is missing or holds no jar (``make jars`` fetches them).
    """
    jars = sorted(jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
    if not jars:
        raise MissingDependencyError(f"JVM dependencies not found in {jars_dir}: run `make jars` (needs Maven and Java 17)")
    return jars


def maven_packages(pom: Path | None = None, profile: str = "spark") -> list[str]:
    """The ``group:artifact:version`` coordinates a profile of ``jvm/pom.xml`` declares.

    These are what ``spark-submit --packages`` needs on a cluster: Ivy resolves the
    transitive ones there, and Spark skips what the cluster already provides.
    """
    pom = pom or project_root() / "jvm" / "pom.xml"
    root = ET.parse(pom).getroot()
    props = {el.tag.split("}")[1]: (el.text or "") for el in root.find("m:properties", _POM_NS) or []}

    def expand(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: props[m.group(1)], text.strip())

    for prof in root.iterfind("m:profiles/m:profile", _POM_NS):
        if prof.findtext("m:id", namespaces=_POM_NS) == profile:
            return [
                ":".join(expand(dep.findtext(f"m:{f}", namespaces=_POM_NS) or "") for f in ("groupId", "artifactId", "version"))
                for dep in prof.iterfind("m:dependencies/m:dependency", _POM_NS)
            ]
    raise MissingDependencyError(f"{pom}: no Maven profile named '{profile}'")


LOCAL_FS_SOURCES = Path("jvm/src/main/java")
LOCAL_FS_CLASS = "dev.mlopsspark.fs.NioLocalFileSystem"

C1_ONLY = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=1g"
"""JVM options that compile with C1 only (``spark.jit: c1``, the test suite's JVMs). C1-only
code keeps the 48 MB code cache of a non-tiered JVM, which Spark fills within a minute (the
JVM then stops compiling): the cache is raised to 1 GB (reserved, committed as used)."""


def build_local_fs(jar: Path, sources: Path | None = None) -> Path | None:
    """Compile :data:`LOCAL_FS_CLASS` against the installed PySpark's Hadoop into ``jar``.

    The class is Hadoop's local file system with permissions set through ``java.nio``
    instead of a ``chmod`` process per file (see its Javadoc); the session factory puts it
    on local sessions when the jar exists. Returns ``None``, leaving Hadoop's own file
    system in use, when no JDK compiler (``javac``, ``jar``) is installed.

    Raises:
        MissingDependencyError: the compiler rejected the source (a Hadoop API change).
    """
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        return None
    sources = sources or project_root() / LOCAL_FS_SOURCES
    files = sorted(str(p) for p in sources.rglob("*.java"))
    with tempfile.TemporaryDirectory() as classes:
        cmd = [javac, "--release", "17", "-nowarn", "-cp", str(pyspark_jars_dir() / "*"), "-d", classes, *files]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise MissingDependencyError(f"javac failed on {sources}: {(done.stderr or done.stdout).strip().splitlines()[0]}")
        jar.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([jar_tool, "cf", str(jar), "-C", classes, "."], check=True)
    return jar


def main(argv: list[str]) -> int:
    """Entry point of ``python -m mlops_spark.spark.jars``."""
    if len(argv) >= 2 and argv[0] == "prune":
        for name in prune_provided(Path(argv[1])):
            print(f"pruned {name} (PySpark ships it)")
        return 0
    if argv[:1] == ["packages"]:
        print(",".join(maven_packages(profile=argv[1] if len(argv) > 1 else "spark")))
        return 0
    if len(argv) >= 2 and argv[0] == "classpath":
        print(",".join(str(p) for p in local_jars(Path(argv[1]))))
        return 0
    if len(argv) >= 2 and argv[0] == "build-local-fs":
        built = build_local_fs(Path(argv[1]))
        print(f"built {built}" if built else "javac not found: local sessions keep Hadoop's local file system (a chmod per file)")
        return 0
    print("usage: python -m mlops_spark.spark.jars {prune DIR | packages [PROFILE] | classpath DIR | build-local-fs JAR}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
