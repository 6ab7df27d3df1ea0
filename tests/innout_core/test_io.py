"""innout_core.io: atomic writes leave the old file or the new one (never a temp file), hashes match hashlib."""

from __future__ import annotations

import hashlib
import json

import pytest

from innout_core import store
from innout_core.errors import BadInputError
from innout_core.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, hash_file, is_temp


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if is_temp(p))


def test_writes_round_trip_and_leave_no_temp_file(tmp_path) -> None:
    assert atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01") == tmp_path / "a" / "b.bin"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1.5, None]})
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": [1.5, None], "b": 1}
    assert (tmp_path / "j.json").read_text().index('"a"') < (tmp_path / "j.json").read_text().index('"b"')
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []


def test_failing_write_keeps_the_old_file_and_removes_the_temp(tmp_path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp != target
        tmp.write_text("half a new fi")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    with pytest.raises(TypeError):  # not JSON: fails before anything lands
        atomic_write_json(target, {1j: 2})  # a complex key cannot be a JSON key
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_failing_first_write_leaves_no_file(tmp_path) -> None:
    with pytest.raises(ValueError), atomic_path(tmp_path / "new.bin"):
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_replace_failure_keeps_old_file(tmp_path, monkeypatch) -> None:
    """A crash at the rename itself (e.g. ENOSPC) leaves the old content and no temp file."""
    target = atomic_write_bytes(tmp_path / "x.bin", b"old")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("innout_core.io.os.replace", no_space)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_hash_file_matches_hashlib_over_chunks(tmp_path, size) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    # a chunk smaller than the file: the digest of the chunked read equals the one-shot digest
    assert hash_file(p, chunk=4096) == hashlib.sha256(data).hexdigest() == hash_file(p)


def test_hash_file_names_an_unreadable_file(tmp_path) -> None:
    with pytest.raises(BadInputError, match="missing.bin"):
        hash_file(tmp_path / "missing.bin")


def test_store_re_exports_the_same_functions() -> None:
    for name in ("atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "hash_file"):
        assert getattr(store, name) is globals()[name]
