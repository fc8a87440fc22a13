package dev.mlopsspark.fs;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FsServerDefaults;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsAction;
import org.apache.hadoop.fs.local.LocalConfigKeys;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.io.nativeio.NativeIO;

/**
 * Hadoop's checksummed local file system ({@code file:}) without a process per file.
 *
 * <p>Without Hadoop's native library (the pip-installed PySpark has none), {@code
 * RawLocalFileSystem} sets the permission of every file and directory it creates by running
 * {@code chmod} in a child process, and every rename first runs {@code readlink} on the
 * source. A partitioned Delta or Parquet write creates a data file, its checksum file and a
 * directory per partition value, so a write of 367 daily partitions started over a thousand
 * processes and spent most of its time in them. This file system sets the same permissions
 * through {@code java.nio} and asks {@code java.nio} whether a path is a symbolic link;
 * everything else is Hadoop's. It defers to Hadoop when the native library is loaded, for the
 * sticky bit (which {@code java.nio} cannot set) and for symbolic links.
 *
 * <p>Enabled with {@code spark.hadoop.fs.file.impl=dev.mlopsspark.fs.NioLocalFileSystem} and,
 * for the {@code FileContext} API that Delta's log store uses, {@code
 * spark.hadoop.fs.AbstractFileSystem.file.impl=dev.mlopsspark.fs.NioLocalFileSystem$Fs}.
 */
public class NioLocalFileSystem extends LocalFileSystem {

  public NioLocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-less) local file system with {@code java.nio} permissions. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      if (NativeIO.isAvailable() || permission.getStickyBit()) {
        super.setPermission(p, permission);
        return;
      }
      Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(permission));
    }

    /** Hadoop runs {@code readlink} here (from every {@code FileContext} rename). */
    @Override
    public FileStatus getFileLinkStatus(Path f) throws IOException {
      if (NativeIO.isAvailable() || Files.isSymbolicLink(pathToFile(f).toPath())) {
        return super.getFileLinkStatus(f);
      }
      return getFileStatus(f);
    }

    static Set<PosixFilePermission> posix(FsPermission permission) {
      Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
      add(out, permission.getUserAction(), PosixFilePermission.OWNER_READ,
          PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);
      add(out, permission.getGroupAction(), PosixFilePermission.GROUP_READ,
          PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE);
      add(out, permission.getOtherAction(), PosixFilePermission.OTHERS_READ,
          PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
      return out;
    }

    private static void add(Set<PosixFilePermission> out, FsAction action,
        PosixFilePermission read, PosixFilePermission write, PosixFilePermission execute) {
      if (action.implies(FsAction.READ)) {
        out.add(read);
      }
      if (action.implies(FsAction.WRITE)) {
        out.add(write);
      }
      if (action.implies(FsAction.EXECUTE)) {
        out.add(execute);
      }
    }
  }

  /** The checksummed {@code FileContext} file system of {@code file:} over {@link Raw}. */
  public static class Fs extends ChecksumFs {
    public Fs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(new RawFs(uri, conf));
    }
  }

  /** Hadoop's {@code RawLocalFs} over {@link Raw} (its constructors are package-private). */
  public static class RawFs extends DelegateToFileSystem {
    public RawFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(uri, new Raw(), conf, "file", false);
    }

    @Override
    public int getUriDefaultPort() {
      return -1;
    }

    @Override
    public FsServerDefaults getServerDefaults(Path f) throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    @Deprecated
    public FsServerDefaults getServerDefaults() throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    public boolean isValidName(String src) {
      return true;
    }
  }
}
