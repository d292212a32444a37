"""Results written whole or not at all (`desim.results.atomic_path`), the one mechanism
behind every results file, report plot, sweep table and cached capture."""

from __future__ import annotations

import stat

import pytest

from desim.results import atomic_path, write_atomic


def test_a_write_lands_whole_as_an_ordinary_file(tmp_path):
    path = tmp_path / "sub" / "summary.json"       # the folder is made
    write_atomic(path, "{}\n")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644   # not mkstemp's private 0o600
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
