"""File discovery and Parquet footers through Hadoop's FileSystem (local, ``s3a://``, ...).

The JVM's FileSystem is used rather than Python libraries so that every store Spark
can read (with the session's credentials and endpoints) can be listed the same way,
and no credentials are handled in Python. The one exception is the footers of local
files (``file:``), which PyArrow reads in the driver: no credentials are involved, and a
footer read through py4j costs about eight round trips per file.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from mlops_spark.errors import ConfigError


@dataclass(frozen=True)
class FileInfo:
    """One file of a landing folder: its fully qualified path, size and modification time (UTC)."""

    path: str
    size: int
    mtime: dt.datetime


@dataclass(frozen=True)
class Footer:
    """What a Parquet footer says about a file; ``error`` is set when it cannot be read.

    ``plain_columns``: the top-level columns none of whose column chunks has a dictionary
    page, i.e. the file's writer found that dictionary encoding did not pay for them (or was
    told not to use it); ``None`` when the file has no row groups or cannot be read.
    """

    path: str
    rows: int | None
    schema: str | None
    error: str | None
    plain_columns: frozenset[str] | None = None


def _plain_columns(chunks: list[tuple[str, bool]]) -> frozenset[str] | None:
    """Top-level columns whose chunks never have a dictionary page, from ``(dotted path, has
    dictionary page)`` of every column chunk of every row group; ``None`` for no chunks."""
    if not chunks:
        return None
    seen: set[str] = set()
    dictionary: set[str] = set()
    for path, has_dictionary in chunks:
        top = path.split(".", 1)[0]
        seen.add(top)
        if has_dictionary:
            dictionary.add(top)
    return frozenset(seen - dictionary)


def _hidden(name: str) -> bool:
    # Spark's file sources skip these too (_SUCCESS, _delta_log, .crc files, ...).
    return name.startswith((".", "_"))


def list_files(spark: SparkSession, folder: str, pattern: str = "*") -> list[FileInfo]:
    """Every non-hidden file under ``folder`` (recursively) whose name matches ``pattern``.

    Args:
        spark: the session whose Hadoop configuration (credentials, endpoints) is used.
        folder: local path or URI of the landing folder.
        pattern: glob on the file name.

    Returns:
        Files sorted by path; paths are fully qualified (``file:/...``, ``s3a://...``).

    Raises:
        ConfigError: the folder does not exist or is a file.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    root = jvm.org.apache.hadoop.fs.Path(folder)  # type: ignore[union-attr]
    fs = root.getFileSystem(conf)
    if not fs.exists(root):
        raise ConfigError(f"landing folder {folder} does not exist")
    if not fs.getFileStatus(root).isDirectory():
        raise ConfigError(f"landing folder {folder} is a file, not a folder")
    found: list[FileInfo] = []
    pending = [root]
    while pending:
        for status in fs.listStatus(pending.pop()):
            path = status.getPath()
            name = path.getName()
            if _hidden(name):
                continue
            if status.isDirectory():
                pending.append(path)
            elif fnmatch.fnmatch(name, pattern):
                mtime = dt.datetime.fromtimestamp(status.getModificationTime() / 1000, tz=dt.timezone.utc)
                found.append(FileInfo(str(fs.makeQualified(path).toString()), int(status.getLen()), mtime.replace(tzinfo=None)))
    return sorted(found, key=lambda f: f.path)


def _java_message(exc: Py4JJavaError) -> str:
    # The first line of the Java exception: class and message, without the stack.
    text = str(exc.java_exception.toString())
    return text.splitlines()[0] if text else "unreadable file"


class _FooterReader:
    """The JVM classes and Hadoop configuration a footer read needs, looked up once: each
    ``jvm.a.b.C`` lookup is a py4j round trip, and they were most of the cost of reading
    hundreds of small files' footers."""

    def __init__(self, spark: SparkSession) -> None:
        jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.path_class = jvm.org.apache.hadoop.fs.Path  # type: ignore[union-attr]
        self.input_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile  # type: ignore[union-attr]
        self.reader = jvm.org.apache.parquet.hadoop.ParquetFileReader  # type: ignore[union-attr]

    def read(self, path: str) -> Footer:
        try:
            input_file = self.input_file.fromPath(self.path_class(path), self.conf)
            reader = self.reader.open(input_file)
            try:
                rows = int(reader.getRecordCount())
                schema = str(reader.getFileMetaData().getSchema().toString())
                chunks = [
                    (str(c.getPath().toDotString()), bool(c.hasDictionaryPage())) for b in reader.getRowGroups() for c in b.getColumns()
                ]
            finally:
                reader.close()
        except Py4JJavaError as exc:
            return Footer(path, None, None, _java_message(exc))
        return Footer(path, rows, schema, None, _plain_columns(chunks))


def read_footer(spark: SparkSession, path: str) -> Footer:
    """Read one file's Parquet footer: row count and physical schema, or the error.

    A file that is not Parquet, or is truncated (no footer magic at its tail), yields
    ``error`` instead of raising.
    """
    return _FooterReader(spark).read(path)


_MAGIC = b"PAR1"


def _local_file(path: str) -> str | None:
    """The local file system path of ``path`` (``file:/...`` or a plain path), else ``None``."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return path if parsed.scheme == "" else None


def _local_footer(path: str, local: str) -> Footer:
    """:func:`read_footer` of a local file with PyArrow; the schema is the Parquet schema's text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        size = os.path.getsize(local)
        if size < 2 * len(_MAGIC) + 4:
            return Footer(path, None, None, f"not a Parquet file: {size} bytes, too short for a Parquet header and footer")
        with open(local, "rb") as fh:
            head = fh.read(len(_MAGIC))
            fh.seek(-len(_MAGIC), os.SEEK_END)
            tail = fh.read(len(_MAGIC))
        if head != _MAGIC:
            return Footer(path, None, None, f"not a Parquet file: it starts with {head!r}, not the Parquet magic {_MAGIC!r}")
        if tail != _MAGIC:
            return Footer(path, None, None, f"not a Parquet file: it ends with {tail!r}, not the Parquet magic {_MAGIC!r} (truncated?)")
        meta = pq.read_metadata(local)
    except (OSError, pa.ArrowException) as exc:
        return Footer(path, None, None, f"{type(exc).__name__}: {exc}")
    chunks = [
        (chunk.path_in_schema, bool(chunk.has_dictionary_page))
        for chunk in (meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns))
    ]
    # The text after the first line (the object's address) is the schema: types and annotations.
    return Footer(path, int(meta.num_rows), str(meta.schema).split("\n", 1)[-1], None, _plain_columns(chunks))


def read_footers(spark: SparkSession, paths: list[str], threads: int = 8) -> list[Footer]:
    """:func:`read_footer` for many files, ``threads`` at a time (py4j calls are thread-safe).

    Local files are read with PyArrow (see the module's note), the others through the JVM.
    """
    if not paths:
        return []
    reader = _FooterReader(spark)

    def read(path: str) -> Footer:
        local = _local_file(path)
        return reader.read(path) if local is None else _local_footer(path, local)

    with ThreadPoolExecutor(max_workers=min(threads, len(paths))) as pool:
        return list(pool.map(read, paths))
