"""Atomic writes."""
import os
import stat

from advrp2k.core.io import write_json


def test_atomic_write_leaves_readable_files_and_no_temp(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044  # group/other can read (default umask)
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]
