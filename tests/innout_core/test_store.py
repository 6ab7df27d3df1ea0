"""Run store: atomic writes, stage records, hashes, and the metrics Parquet schema (pandas, pyarrow, dask)."""

from __future__ import annotations

import hashlib
import json
import math
import os

import pyarrow.parquet as pq
import pytest

from innout_core import store
from innout_core.errors import BadInputError, InnoutError

DEFS = {"psnr": "PSNR in dB, data range 2 ([-1,1] inputs)", "ssim": "SSIM gaussian window 11, sigma 1.5"}


def _rows(n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append(
            dict(run="r", video="v0", method="innout", variant="no-masks", mode="video", frame=10 + i, edit="",
                 lpips=None, ssim=0.9 - i / 10, psnr=30.0 + i, id_sim=None, id_sim_edit=None, seconds=1.5,
                 reason="lpips: backbone missing")
        )
    rows.append(dict(rows[0], method="w+", variant="", edit="smile", id_sim_edit=0.8))
    return rows


def test_atomic_path_leaves_previous_content_on_error(tmp_path):
    target = tmp_path / "a" / "x.json"
    store.atomic_write_json(target, {"k": 1})
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target and tmp.suffix == ".json"
            tmp.write_text("half")
            raise RuntimeError("crash in the middle")
    assert json.loads(target.read_text()) == {"k": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]  # temp file cleaned up


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_umask_mode(tmp_path, umask):
    """Run outputs get 0666 minus the umask, like any new file (a mkstemp temp file would leave them 0600)."""
    old = os.umask(umask)
    try:
        store.atomic_write_json(tmp_path / "new.json", {"k": 1})
        (tmp_path / "old.json").write_text("{}")
        store.atomic_write_json(tmp_path / "old.json", {"k": 2})
    finally:
        os.umask(old)
    for name in ("new.json", "old.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_records_and_is_done(tmp_path):
    d = store.stage_dir(tmp_path, "vid", "invert-w+")
    assert d == tmp_path / "videos" / "vid" / "invert-w+"
    assert store.read_record(d) is None and not store.is_done(d, "i", "c")
    rec = store.StageRecord(stage="invert-w+", video="vid", input_hash="i", config_hash="c").started_now()
    assert rec.status == "running" and rec.attempts == 1 and rec.code_version.startswith("innout")
    store.write_record(d, rec)
    assert not store.is_done(d, "i", "c")
    store.atomic_write_bytes(d / "latents.safetensors", b"123")
    done = rec.model_copy(update={"status": "done", "outputs": {"latents": "latents.safetensors"}})
    store.write_record(d, done)
    assert store.is_done(d, "i", "c")
    assert not store.is_done(d, "other", "c") and not store.is_done(d, "i", "other")
    (d / "latents.safetensors").unlink()  # an output vanished: not done any more
    assert not store.is_done(d, "i", "c")
    (d / "stage.json").write_text("{not json")  # corrupt record reads as absent
    assert store.read_record(d) is None


def test_hashes(tmp_path):
    assert store.hash_json({"a": 1, "b": [1, 2]}) == store.hash_json({"b": [1, 2], "a": 1})
    assert store.hash_json({"a": 1}) != store.hash_json({"a": 2})
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert store.hash_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    with pytest.raises(BadInputError, match="cannot read"):
        store.hash_file(tmp_path / "missing")


def test_metrics_parquet_roundtrip_pandas_pyarrow_dask(tmp_path):
    import dask.dataframe as dd
    import pandas as pd

    rows = _rows()
    for v in ("v0", "v1"):
        store.write_metrics(store.metrics_path(tmp_path, v), [dict(r, video=v) for r in rows], DEFS)
    path = store.metrics_path(tmp_path, "v0")
    table, defs = store.read_metrics(path)
    assert defs == DEFS and table.num_rows == len(rows)
    assert table.schema.remove_metadata() == store.METRICS_SCHEMA.remove_metadata()
    assert pq.read_schema(path).metadata[b"innout.schema_version"] == store.METRICS_SCHEMA_VERSION.encode()
    df = pd.read_parquet(path)
    assert list(df.columns) == store.METRICS_SCHEMA.names
    assert df["frame"].tolist() == [10, 11, 12, 10] and df["frame"].dtype == "int64"
    assert df["lpips"].isna().all() and math.isclose(df["psnr"][2], 32.0)
    ddf = dd.read_parquet(str(tmp_path / "videos" / "*" / "metrics.parquet"))
    got = ddf.compute()
    assert len(got) == 2 * len(rows) and set(got["video"]) == {"v0", "v1"}
    assert got.groupby("method")["psnr"].mean().loc["innout"] == pytest.approx(31.0)


def test_metrics_rejects_bad_rows(tmp_path):
    path = tmp_path / "m.parquet"
    bad = _rows(1)
    del bad[0]["reason"]
    with pytest.raises(BadInputError, match="missing \\['reason'\\]"):
        store.write_metrics(path, bad, DEFS)
    with pytest.raises(BadInputError, match="unknown method"):
        store.write_metrics(path, [dict(_rows(1)[0], method="e4e")], DEFS)
    with pytest.raises(BadInputError, match="schema"):
        store.write_metrics(path, [dict(_rows(1)[0], frame="x")], DEFS)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def _done_stage(tmp_path, big: int = 0):
    """A done record over a small file, a directory output and (``big`` bytes) a file above the cheap-hash size."""
    d = tmp_path / "st"
    (d / "png").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"abcdef")
    (d / "png" / "f0.png").write_bytes(b"x" * 10)
    outputs = {"a": "a.bin", "png": "png"}
    if big:
        (d / "big.bin").write_bytes(b"\0" * big)
        outputs["big"] = "big.bin"
    files = store.list_outputs(d, outputs)
    rec = store.StageRecord(stage="s", video="v", status="done", outputs=outputs, files=files,
                            output_hash=store.outputs_hash(d, outputs, files))
    store.write_record(d, rec)
    return d, rec


def test_list_outputs_sizes_hashes_and_output_hash(tmp_path):
    d, rec = _done_stage(tmp_path)
    assert set(rec.files) == {"a.bin", "png/f0.png"}
    assert rec.files["a.bin"].size == 6 and rec.files["a.bin"].sha256 == hashlib.sha256(b"abcdef").hexdigest()
    (d / "png" / ".f1.1234.tmp.png").write_bytes(b"half")  # a killed writer's temp file is not an output
    assert store.list_outputs(d, rec.outputs) == rec.files
    assert store.outputs_hash(d, rec.outputs, rec.files) == rec.output_hash
    with pytest.raises(InnoutError, match="stage output 'x' was not written"):
        store.list_outputs(d, {"x": "x.bin"})


def test_verify_outputs_finds_missing_truncated_altered_extra(tmp_path):
    d, rec = _done_stage(tmp_path)
    assert store.verify_outputs(d, rec, "full") is None and store.is_done(d, "", "")
    (d / "a.bin").write_bytes(b"abc")  # truncated
    p = store.verify_outputs(d, rec, "size")
    assert p.path == d / "a.bin" and "3 bytes, was 6" in p.problem and not store.is_done(d, "", "")
    (d / "a.bin").write_bytes(b"abcdeX")  # same size, altered: a small file is re-hashed in quick mode
    assert store.verify_outputs(d, rec, "size") is None and "altered" in store.verify_outputs(d, rec).problem
    (d / "a.bin").write_bytes(b"abcdef")
    (d / "png" / "f9.png").write_bytes(b"y")
    assert "did not write" in store.verify_outputs(d, rec).problem
    (d / "png" / "f9.png").unlink()
    (d / "png" / "f0.png").unlink()
    assert "missing" in store.verify_outputs(d, rec, "size").problem


def test_quick_verify_rehashes_big_files_only_when_mtime_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHEAP_HASH_BYTES", 100)
    d, rec = _done_stage(tmp_path, big=1000)
    st = (d / "big.bin").stat()
    with open(d / "big.bin", "r+b") as fh:  # alter one byte in place, then put the old mtime back
        fh.write(b"\1")
    os.utime(d / "big.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.verify_outputs(d, rec, "quick") is None  # size and mtime unchanged: not re-hashed
    assert "altered" in store.verify_outputs(d, rec, "full").problem
    os.utime(d / "big.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert "altered" in store.verify_outputs(d, rec, "quick").problem


def test_mark_redo_only_touches_done_records(tmp_path):
    d, rec = _done_stage(tmp_path)
    assert store.mark_redo(d, "because") and store.read_record(d).status == "pending"
    assert store.read_record(d).info["redo"] == "because" and not store.mark_redo(d, "again")
    assert not store.mark_redo(tmp_path / "none", "x")
