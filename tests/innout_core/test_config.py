"""Pipeline config: presets, YAML round trip, clear errors; manifests: validation errors name manifest and entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from innout_core.config import PRESETS, PipelineConfig, load_config, load_manifest
from innout_core.errors import BadInputError


def test_presets_have_descriptions_and_validate():
    assert set(PRESETS) == {"paper", "official", "fast", "tiny-demo"}
    for name, info in PRESETS.items():
        assert len(info.description) > 40
        cfg = PipelineConfig.from_preset(name)
        assert cfg.preset == name
    tiny = PipelineConfig.from_preset("tiny-demo")
    assert tiny.generator == "tiny-face" and tiny.face.backend == "given" and tiny.modes == ["video"]
    # the demo's budget goes to the occluder-aware variants and the baselines they are compared with
    assert tiny.innout_variants == ["no-masks", "auto-masks", "user-masks"] and tiny.methods == ["w+", "pti", "innout"]


def test_yaml_roundtrip_and_overrides(tmp_path):
    cfg = PipelineConfig.from_preset("fast", seed=7, dask={"workers": 3}, joint={"steps": 5})
    assert cfg.dask.workers == 3 and cfg.dask.cluster == "local" and cfg.video.max_frames == 32
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    again = load_config(p)
    assert again == cfg
    # --preset on the command line wins over the file's preset, file values still apply
    other = load_config(p, preset="paper")
    assert other.preset == "paper" and other.seed == 7 and other.joint.steps == 5
    # the file holds only what differs from its preset: the rest is the new preset's
    assert other.joint.composite_form == "paper" and other.joint.mask_mode == "none" and other.video.max_frames is None
    assert yaml.safe_load(p.read_text()) == {"preset": "fast", "seed": 7, "dask": {"workers": 3}, "joint": {"steps": 5}}


@pytest.mark.parametrize(
    "text, match",
    [
        ("seed: [1", "not valid YAML"),
        ("- 1\n- 2", "must be a YAML mapping"),
        ("preset: nope", "unknown preset 'nope'"),
        ("methods: [w, e4e]", "methods.1"),
        ("dask: {workers: 0}", "dask.workers"),
        ("colour: red", "colour: Extra inputs"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(BadInputError, match=match) as info:
        load_config(p)
    assert str(p) in str(info.value)


def test_manifest_resolves_relative_paths(tmp_path):
    (tmp_path / "data").mkdir()
    m = tmp_path / "data" / "set.yaml"
    m.write_text(yaml.safe_dump({"name": "set", "videos": [
        {"id": "a", "path": "a.mp4", "frame_range": [0, 4], "cameras": "a_cams.npy"},
        {"id": "b", "path": "/abs/b.mp4"}]}))
    man = load_manifest(m)
    assert man.name == "set" and [v.id for v in man.videos] == ["a", "b"]
    assert man.resolve(man.videos[0].path) == (tmp_path / "data" / "a.mp4").resolve()
    assert man.resolve(man.videos[1].path) == Path("/abs/b.mp4")
    assert man.videos[0].frame_range == (0, 4) and man.video("b").masks is None


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"name": "s", "videos": [{"id": "a", "path": "a.mp4"}, {"id": "b"}]}, r"videos\[1\]\.path \(video 'b'\)"),
        ({"name": "s", "videos": [{"id": "a", "path": "a.mp4", "frame_range": [5, 2]}]}, "frame_range"),
        ({"name": "s", "videos": [{"id": "a", "path": "x"}, {"id": "a", "path": "y"}]}, "duplicate video id 'a'"),
        ({"name": "s", "videos": [{"id": "a b", "path": "x"}]}, r"videos\[0\]\.id"),
        ({"name": "s", "videos": []}, "videos"),
    ],
)
def test_manifest_errors_name_manifest_and_entry(tmp_path, doc, match):
    m = tmp_path / "bad.yaml"
    m.write_text(yaml.safe_dump(doc))
    with pytest.raises(BadInputError, match=match) as info:
        load_manifest(m)
    assert str(info.value).startswith(str(m))


def test_missing_manifest(tmp_path):
    with pytest.raises(BadInputError, match="cannot read manifest"):
        load_manifest(tmp_path / "none.yaml")


def test_stage_configs_from_presets_and_variants():
    from innout_core.joint import JointConfig

    cfg = PipelineConfig.from_preset("tiny-demo", joint={"steps": 3, "weights": {"l2": 2.0}})
    j = cfg.joint_config("no-masks")
    ref = JointConfig.preset("tiny-demo")
    assert j.steps == 3 and j.weights.l2 == 2.0 and j.mask_mode == "none"
    assert j.weights.blend_area == ref.weights.blend_area  # nested override merges, the rest stays the preset's
    assert cfg.joint_config("auto-masks").mask_mode == "auto" and cfg.joint_config("user-masks").mask_mode == "user"
    assert cfg.joint_config("w/o L_b").weights.blend_entropy == 0.0
    assert cfg.joint_config("w/o L_w").weights.latent == 0.0
    assert cfg.joint_config("w/o L_b").weights.l2 == 2.0
    inv = cfg.inversion_config("pti")
    assert inv.method == "pti" and inv.steps == 40
    assert cfg.face_config().backend == "given"
    paper = PipelineConfig.from_preset("paper")
    assert paper.joint_config("no-masks").composite_form == "paper"


def test_bad_stage_override_names_section():
    with pytest.raises(BadInputError, match=r"^joint\.stepz: Extra inputs are not permitted$"):
        PipelineConfig.from_preset("tiny-demo", joint={"stepz": 3})
    with pytest.raises(BadInputError, match="unknown In-N-Out variant 'w/o L_x'"):
        PipelineConfig.from_preset("tiny-demo").joint_config("w/o L_x")


def test_one_preset_table_sets_every_stage():
    """A preset means the same numbers in the pipeline config and in each stage model's own ``preset``; the typed
    sections are the stage models themselves."""
    from innout_core.edit import EditConfig
    from innout_core.face import FaceConfig
    from innout_core.inversion import InversionConfig
    from innout_core.joint import JointConfig
    from innout_core.sr_tuning import SRTuningConfig

    for name in PRESETS:
        cfg = PipelineConfig.from_preset(name)
        assert isinstance(cfg.joint, JointConfig) and cfg.joint == JointConfig.preset(name)
        assert cfg.inversion_config("pti") == InversionConfig.preset(name, "pti")
        assert cfg.sr_tuning == SRTuningConfig.preset(name) and cfg.edit == EditConfig.preset(name)
        assert cfg.face == FaceConfig.preset(name)
    tiny = PipelineConfig.from_preset("tiny-demo")
    assert (tiny.joint.steps, tiny.inversion.steps, tiny.sr_tuning.epochs) == (60, 40, 0)
    assert JointConfig.preset("tiny-demo").steps == 60  # one number, wherever the preset is named
    # values round-trip through a dump: the preset underneath does not override explicit values
    again = PipelineConfig.model_validate(tiny.model_dump())
    assert again == tiny and PipelineConfig.model_validate({**tiny.model_dump(), "preset": "paper"}).joint == tiny.joint


def test_stage_sections_are_validated_when_the_config_is_loaded(tmp_path):
    """Every stage section is checked against its stage's model at load time, every bad key named in one line."""
    p = tmp_path / "stages.yaml"
    p.write_text("joint: {stepz: 3, steps: many}\nface: {backend: nope}\nedit: {colour: red}\n"
                 "sr_tuning: {epochs: -1}\ninversion: {steps: 2, lr: fast}\n")
    with pytest.raises(BadInputError) as info:
        load_config(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg
    for needle in ("face.backend: Input should be 'insightface', 'dlib' or 'given' (got 'nope')",
                   "inversion.lr: Input should be a valid number", "joint.steps: Input should be a valid integer",
                   "joint.stepz: Extra inputs are not permitted", "sr_tuning.epochs: Input should be greater than "
                   "or equal to 0 (got -1)", "edit.colour: Extra inputs are not permitted"):
        assert msg.count(needle) == 1, (needle, msg)
    assert "inversion.steps" not in msg  # a good key is not reported


def test_pipeline_and_stage_errors_are_reported_together(tmp_path):
    p = tmp_path / "both.yaml"
    p.write_text("methods: [w, e4e]\nretries: -1\njoint: {stepz: 1}\n")
    with pytest.raises(BadInputError) as info:
        load_config(p)
    msg = str(info.value)
    assert "methods[1]: Input should be 'w', 'w+', 'pti' or 'innout' (got 'e4e')" in msg
    assert "retries: Input should be greater than or equal to 0 (got -1)" in msg
    assert "joint.stepz: Extra inputs are not permitted" in msg


def test_error_without_location_names_something(tmp_path):
    p = tmp_path / "empty-methods.yaml"
    p.write_text("methods: []\n")
    with pytest.raises(BadInputError) as info:
        load_config(p)
    assert f"{p}: (top level): methods and modes must not be empty" == str(info.value)
    m = tmp_path / "dup.yaml"
    m.write_text(yaml.safe_dump({"name": "s", "videos": [{"id": "a", "path": "x"}, {"id": "a", "path": "y"}]}))
    with pytest.raises(BadInputError) as info:
        load_manifest(m)
    assert str(info.value) == f"{m}: manifest: duplicate video id 'a'"


def test_manifest_errors_name_every_bad_entry(tmp_path):
    m = tmp_path / "two.yaml"
    m.write_text(yaml.safe_dump({"name": "s", "videos": [{"id": "a", "path": "x", "frame_range": [3, 1]},
                                                          {"id": "b", "colour": 1}]}))
    with pytest.raises(BadInputError) as info:
        load_manifest(m)
    msg = str(info.value)
    assert "manifest entry videos[0].frame_range (video 'a'): frame_range must be [first, last)" in msg
    assert "manifest entry videos[1].path (video 'b'): Field required" in msg
    assert "manifest entry videos[1].colour (video 'b'): Extra inputs are not permitted" in msg


@pytest.mark.parametrize("loader", ["config", "manifest"])
def test_yaml_errors_keep_line_and_column(tmp_path, loader):
    p = tmp_path / "broken.yaml"
    p.write_text("name: s\nvideos:\n  - id: a\n    path: x: y\n")
    with pytest.raises(BadInputError, match=r"line 4, column 12: mapping values are not allowed here") as info:
        (load_config if loader == "config" else load_manifest)(p)
    assert str(info.value).startswith(f"{p}: ")


def test_workers_are_validated():
    cfg = PipelineConfig.from_preset("tiny-demo")
    assert cfg.with_workers(3).dask.workers == 3 and cfg.with_workers(None) is cfg
    with pytest.raises(BadInputError, match=r"workers: Input should be greater than or equal to 1 \(got 0\)"):
        cfg.with_workers(0)


def test_save_resolved_run_yaml_roundtrips(tmp_path):
    from innout_core.config import save_resolved

    cfg = PipelineConfig.from_preset("tiny-demo", seed=3, innout_variants=["no-masks", "w/o L_w"])
    p = save_resolved(cfg, tmp_path, "abc", manifest=tmp_path / "m.yaml")
    doc = yaml.safe_load(p.read_text())
    assert doc["manifest_hash"] == "abc" and doc["code_version"].startswith("innout")
    assert doc["stages"]["joint[w/o L_w]"]["weights"]["latent"] == 0.0
    assert load_config(p) == cfg  # `innout retry` reads the run's config back from run.yaml


def test_amp_is_on_in_the_fast_preset_only_and_overridable(tmp_path) -> None:
    fast, paper = load_config(None, "fast"), load_config(None, "paper")
    v = paper.innout_variants[0]
    assert (fast.joint_config(v).amp, fast.sr_config().amp, fast.inversion_config("w+").amp) == ("bf16",) * 3
    assert (paper.joint_config(v).amp, paper.sr_config().amp, paper.inversion_config("pti").amp) == ("off",) * 3
    cfg = tmp_path / "bf16.yaml"
    cfg.write_text("preset: paper\ninversion: {amp: bf16}\njoint: {amp: bf16}\nsr_tuning: {amp: bf16}\n")
    mine = load_config(cfg)
    assert (mine.joint_config(v).amp, mine.sr_config().amp, mine.inversion_config("w").amp) == ("bf16",) * 3
    assert mine.joint_config(v).steps == paper.joint_config(v).steps  # the rest stays the paper's


def test_official_preset_runs_the_release_default_with_user_masks() -> None:
    """The release's default script needs per-frame masks: `official` lists `user-masks` (skipped per video
    without masks); `official` + `no-masks` is the same losses with the mask-only term off."""
    cfg = PipelineConfig.from_preset("official")
    assert "user-masks" in cfg.innout_variants and "no-masks" in cfg.innout_variants
    assert cfg.joint_config("user-masks").mask_mode == "user"
    assert cfg.joint_config("no-masks").mask_mode == "none"


def test_manifest_depth_field(tmp_path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text("name: d\nvideos:\n  - {id: a, path: a.mp4, depth: depth/a.npz}\n")
    man = load_manifest(m)
    assert man.resolve(man.videos[0].depth) == (tmp_path / "depth" / "a.npz").resolve()
