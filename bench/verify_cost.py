"""What checking stage outputs costs for a long video: hashing at write, the quick check every run/retry makes, the
size-only check of `innout status`, and the full check of `innout verify`.

A real finished run of a short video gives every stage's files and sizes; this builds the same stages for a
``--frames``-frame video (PNG frames replicated, every other file over 4 KiB scaled with the frame count, which
over-estimates the files that do not grow with it, e.g. stage B's SR weights), lists the outputs as the stage wrapper
does, and times the three checks (page cache warm: the files were just written). The baseline in the same run is
hashing all the bytes once (the write-time cost) so the checks read as ratios of it.

    python bench/verify_cost.py --run runs/demo            # a finished run (its first video)
    python bench/verify_cost.py                            # makes a 1-video, 2-frame tiny run first

Prints a table and writes ``bench/results/verify_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _make_run(root: Path) -> Path:
    """A finished 1-video, 2-frame run of the soak's config (bench/soak.py)."""
    import yaml

    from bench.soak import SOAK_CONFIG, innout_cmd
    from flows.demo import build_demo_dataset

    man = build_demo_dataset(root, n_videos=1, n_frames=2, generator="tiny")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**SOAK_CONFIG, "dask": {"workers": 1}}))
    run = root / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "INNOUT_THREADS": "1"}
    subprocess.run(innout_cmd("run", str(man), "--config", str(cfg), "--run-dir", str(run)), env=env, check=True,
                   cwd=root)
    return run


def build_long_video(src: Path, dst_run: Path, frames: int) -> tuple[int, int]:
    """Copy the stage layout of video dir ``src`` to a ``frames``-frame video in ``dst_run``; returns
    (files, bytes). Records are written by :func:`innout_core.store.list_outputs` (timed by the caller)."""
    from innout_core.store import read_record

    n_src = int(read_record(src / "frames").info["n_frames"])
    block = os.urandom(1 << 20)
    n_files = n_bytes = 0
    vdir = dst_run / "videos" / "long"
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        rec = read_record(d)
        if rec is None or rec.status != "done":
            continue
        out = vdir / d.name
        out.mkdir(parents=True, exist_ok=True)
        pngs = [r for r in rec.files if r.startswith("png/")]
        sizes: dict[str, int] = {}
        for rel, e in rec.files.items():
            if rel in pngs:
                continue
            sizes[rel] = e.size * frames // n_src if e.size > 4096 else e.size
        if pngs:
            mean = sum(rec.files[r].size for r in pngs) // len(pngs)
            sizes.update({f"png/frame_{i:06d}.png": mean for i in range(frames)})
        for rel, size in sizes.items():
            p = Path(os.path.normpath(out / rel))
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as fh:
                left = size
                while left > 0:
                    fh.write(block[: min(left, len(block))])
                    left -= len(block)
            n_files += 1
            n_bytes += size
        (out / ".outputs.json").write_text(json.dumps(rec.outputs))
    return n_files, n_bytes


def _timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run directory (default: make a tiny one)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "verify_cost.json")
    a = ap.parse_args(argv)
    from bench.machine import machine_info
    from innout_core.store import StageRecord, hash_file, list_outputs, outputs_hash, write_record
    from tasks.verify import check_video

    with tempfile.TemporaryDirectory(prefix="innout-verify-cost-") as tmp:
        run = a.run or _make_run(Path(tmp) / "src")
        src = sorted(p for p in (run / "videos").iterdir() if p.is_dir())[0]
        dst = Path(tmp) / "long-run"
        n_files, n_bytes = build_long_video(src, dst, a.frames)
        vdir = dst / "videos" / "long"
        all_files = [p for p in vdir.rglob("*") if p.is_file() and p.name != ".outputs.json"]
        t_hash = _timed(lambda: [hash_file(p) for p in all_files], a.repeat)  # baseline: every byte once

        def write_records() -> None:
            for d in sorted(p for p in vdir.iterdir() if p.is_dir()):
                outputs = json.loads((d / ".outputs.json").read_text())
                files = list_outputs(d, outputs)
                write_record(d, StageRecord(stage=d.name, video="long", status="done", outputs=outputs,
                                            files=files, output_hash=outputs_hash(d, outputs, files)))

        t_write = _timed(write_records, 1)
        from innout_core.config import ManifestVideo, load_config

        cfg = load_config(run / "run.yaml")
        entry = ManifestVideo(id="long", path=Path("long.mp4"))
        checks = {}
        for mode in ("size", "quick", "full"):
            damage = check_video(dst, cfg, entry, mode, mark=False)  # type: ignore[arg-type]
            assert damage == [], [d.line() for d in damage]
            checks[mode] = _timed(lambda mode=mode: check_video(dst, cfg, entry, mode, mark=False), a.repeat)
    r: dict[str, Any] = {"bench": "verify_cost", "frames": a.frames, "files": n_files, "bytes": n_bytes,
                         "source_run": str(run) if a.run else "tiny 1-video 2-frame run made here",
                         "hash_all_once_s": t_hash, "list_outputs_at_write_s": t_write,
                         "check_s": checks, "ratio_to_hash_all": {k: v / t_hash for k, v in checks.items()},
                         "hash_MB_per_s": n_bytes / t_hash / 1e6, "machine": machine_info()}
    rows = [("video", f"{a.frames} frames, {n_files} output files, {n_bytes / 1e6:.1f} MB"),
            ("hash every byte once (baseline)", f"{t_hash * 1e3:.0f} ms ({r['hash_MB_per_s']:.0f} MB/s)"),
            ("list outputs at write (hash once)", f"{t_write * 1e3:.0f} ms")]
    rows += [(f"check '{m}'" + {"size": " (status)", "quick": " (run/retry)", "full": " (verify)"}[m],
              f"{t * 1e3:.0f} ms ({t / t_hash:.2f}x baseline)") for m, t in checks.items()]
    w = max(len(x) for x, _ in rows)
    for x, y in rows:
        print(f"{x:<{w}}  {y}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
