"""The local file system the session factory installs (``jvm/src``): Hadoop's, without a
``chmod`` process per file, and with the same permissions on what it creates."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from mlops_spark.spark.jars import LOCAL_FS_CLASS, build_local_fs, project_root

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK compiler: make jars does not build the jar")


def _file_systems(spark, root):
    """(ours, Hadoop's raw local file system) for ``root``."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    ours = jvm.org.apache.hadoop.fs.Path(str(root)).getFileSystem(conf)
    hadoops = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    hadoops.initialize(jvm.java.net.URI("file:///"), conf)
    return jvm, ours, hadoops


def _file_context(spark):
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.hadoop.fs.FileContext.getFileContext(jvm.java.net.URI("file:///"), spark.sparkContext._jsc.hadoopConfiguration())


def _children_faults(pid: int) -> int:
    """cminflt of ``pid``: minor faults of its reaped child processes; every process has some."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[8])


def test_sessions_use_it_for_file_paths(spark, tmp_path):
    _, ours, _ = _file_systems(spark, tmp_path)
    assert ours.getClass().getName() == LOCAL_FS_CLASS
    assert ours.getRawFileSystem().getClass().getName() == LOCAL_FS_CLASS + "$Raw"
    # FileContext (Delta's log store writes and renames its commits with it).
    context = _file_context(spark)
    assert context.getDefaultFileSystem().getClass().getName() == LOCAL_FS_CLASS + "$Fs"


def test_renames_and_symbolic_links_behave_as_with_hadoops(spark, tmp_path):
    jvm, _, _ = _file_systems(spark, tmp_path)
    context = _file_context(spark)
    path = jvm.org.apache.hadoop.fs.Path
    (tmp_path / "a").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    status = context.getFileLinkStatus(path(str(tmp_path / "link")))
    assert status.isSymlink() and str(status.getSymlink().toUri().getPath()) == str(tmp_path / "a")
    assert not context.getFileLinkStatus(path(str(tmp_path / "a"))).isSymlink()
    no_options = spark.sparkContext._gateway.new_array(getattr(jvm.org.apache.hadoop.fs, "Options$Rename"), 0)
    context.rename(path(str(tmp_path / "a")), path(str(tmp_path / "b")), no_options)
    assert (tmp_path / "b").read_text() == "x" and not (tmp_path / "a").exists()
    with pytest.raises(Exception, match="FileNotFoundException"):
        context.getFileLinkStatus(path(str(tmp_path / "missing")))


@pytest.mark.parametrize("mode", [0o640, 0o755, 0o600, 0o444, 0o1777])
def test_files_and_folders_get_the_same_permissions_as_with_hadoops(spark, tmp_path, mode):
    jvm, ours, hadoops = _file_systems(spark, tmp_path)
    perm = jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
    modes = {}
    for name, fs in (("ours", ours), ("hadoop", hadoops)):
        folder = jvm.org.apache.hadoop.fs.Path(str(tmp_path / name / "dir"))
        assert fs.mkdirs(folder, perm)
        fs.setPermission(folder, perm)
        modes[name] = [stat.S_IMODE(os.stat(tmp_path / name / "dir").st_mode)]
        if mode & 0o200:
            out = fs.create(jvm.org.apache.hadoop.fs.Path(str(tmp_path / name / "file")), perm, True, 4096, 1, 1 << 20, None)
            out.write(b"abc")
            out.close()
            modes[name].append(stat.S_IMODE(os.stat(tmp_path / name / "file").st_mode))
            assert (tmp_path / name / "file").read_bytes() == b"abc"
    assert modes["ours"] == modes["hadoop"]
    assert modes["ours"][0] == mode
    if mode & 0o200:
        # Checksummed like Hadoop's (checksummed) local file system.
        assert (tmp_path / "ours" / ".file.crc").exists()


def test_a_partitioned_write_starts_no_process(spark, tmp_path):
    """Hadoop's own local file system runs chmod for every file and folder of a write (over
    a hundred processes for 50 partitions); this one none. A reaped child process adds its
    page faults to the JVM's cminflt, so the count stays put only when nothing was started.

    The session's JVM is shared with the worker's other tests, and now and then it reaps an
    unrelated child during the write (seen once in a full run: one small process). So the
    write gets three tries and one clean try passes; a chmod per file would move the count
    on every try."""
    jvm, _, hadoops = _file_systems(spark, tmp_path)
    pid = int(jvm.java.lang.ProcessHandle.current().pid())
    df = spark.range(500).selectExpr("id", "id % 50 AS part")
    df.write.format("delta").partitionBy("part").save(str(tmp_path / "warm"))  # classes loaded, codegen done
    moved = []
    for attempt in range(3):
        before = _children_faults(pid)
        df.write.format("delta").partitionBy("part").save(str(tmp_path / f"t{attempt}"))
        assert len(list((tmp_path / f"t{attempt}").glob("part=*"))) == 50
        moved.append(_children_faults(pid) - before)
        if moved[-1] == 0:
            break
    assert moved[-1] == 0, f"child page faults moved by {moved} during three partitioned writes"
    before = _children_faults(pid)
    # The probe sees Hadoop's chmod processes: one file with Hadoop's file system moves it.
    perm = jvm.org.apache.hadoop.fs.permission.FsPermission(0o644)
    out = hadoops.create(jvm.org.apache.hadoop.fs.Path(str(tmp_path / "probe")), perm, True, 4096, 1, 1 << 20, None)
    out.close()
    assert _children_faults(pid) > before


def test_the_jar_builds_from_the_checked_in_source(tmp_path):
    jar = build_local_fs(tmp_path / "fs.jar", project_root() / "jvm/src/main/java")
    assert jar is not None and jar.stat().st_size > 0
