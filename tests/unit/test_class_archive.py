"""Building the class data sharing archive: a failing session is a warning, never a broken install."""

from __future__ import annotations

import pytest

from mlops_spark.errors import MissingDependencyError
from mlops_spark.spark import class_archive


def test_a_session_that_cannot_start_names_the_archive_and_the_cause(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))  # the child's session fails before any JVM
    target = tmp_path / "cds" / "spark.jsa"
    with pytest.raises(MissingDependencyError, match=rf"class archive {target}: the archiving session failed \(.*no bin/java"):
        class_archive.build(target)
    assert not target.exists()
    # make jars goes on: the archive only makes sessions start sooner.
    assert class_archive.main(["build", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: class archive {target}: the archiving session failed") and "start without it" in err
    assert class_archive.main(["bogus"]) == 2
