"""check_video: a damaged done stage takes itself and every done stage downstream of it back to pending."""

from __future__ import annotations

from pathlib import Path

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.store import read_record
from tasks.plan import planned_stages
from tasks.stage import StageOutput, VideoJob, run_stage
from tasks.verify import check_video


def _cfg() -> PipelineConfig:
    return PipelineConfig.from_preset("tiny-demo").model_copy(update={
        "methods": ["w", "innout"], "innout_variants": ["no-masks"], "modes": ["video"]})


def _all_done(tmp_path: Path) -> tuple[VideoJob, list[str]]:
    cfg = _cfg()
    job = VideoJob(tmp_path / "run", "run", ManifestVideo(id="v", path=tmp_path / "v.mp4"), cfg)
    stages = planned_stages(cfg, job.video)
    for s in stages:
        def body(d: Path, s: str = s) -> StageOutput:
            (d / "out.bin").write_bytes(s.encode() * 100)
            return StageOutput({"out": "out.bin"})
        run_stage(job, s, [s], "c", body)
    return job, stages


def test_damaged_stage_and_downstream_marked(tmp_path):
    job, stages = _all_done(tmp_path)
    assert check_video(job.run_dir, job.config, job.video) == []
    f = job.stage_dir("invert-w+") / "out.bin"
    f.write_bytes(f.read_bytes()[:10])
    (job.stage_dir("edits-w") / "out.bin").unlink()
    found = check_video(job.run_dir, job.config, job.video, "size", mark=False)
    assert [d.stage for d in found] == ["edits-w", "invert-w+"]  # plan order: the W branch comes first
    assert all(read_record(job.stage_dir(s)).status == "done" for s in stages)  # mark=False writes nothing
    found = check_video(job.run_dir, job.config, job.video)
    tail = stages[stages.index("metrics"):]
    assert found[0].redo == ["edits-w", *tail] and found[0].problem.path == job.stage_dir("edits-w") / "out.bin"
    assert found[1].problem.path == f and found[1].redo == ["invert-w+", "stage-a-no-masks", "stage-b-no-masks",
                                                            "edits-no-masks"]  # metrics etc. already taken
    assert f"video 'v': {f}: stage output is 10 bytes" in found[1].line()
    redo = {s for d in found for s in d.redo}
    for s in stages:
        assert read_record(job.stage_dir(s)).status == ("pending" if s in redo else "done"), s
    assert {"frames", "face", "invert-w"}.isdisjoint(redo)
    assert check_video(job.run_dir, job.config, job.video) == []  # pending stages are not checked
