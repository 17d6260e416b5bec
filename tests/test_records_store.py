"""records/store.write_new: a new name each time, and a typed error (not an AssertionError)
when it cannot find one."""
from __future__ import annotations

import pytest

from tap_lib.errors import RecordsUnwritable
from tap_lib.records.store import write_new


def test_write_new_never_overwrites_and_says_when_names_run_out(tmp_path):
    first = write_new(tmp_path, "export", ".html", b"one")
    second = write_new(tmp_path, "export", ".html", b"two")
    assert (first.name, second.name) == ("export.html", "export-2.html")
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    write_new(tmp_path, "export", ".html", b"three", limit=3)
    with pytest.raises(RecordsUnwritable) as info:
        write_new(tmp_path, "export", ".html", b"four", limit=3)
    assert "export-3.html all exist already" in str(info.value)
    assert str(tmp_path) in info.value.hint and info.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "export-2.html", "export-3.html", "export.html"]          # nothing overwritten
