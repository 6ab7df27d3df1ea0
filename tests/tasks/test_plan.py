"""Stage plans per config / manifest entry."""

from __future__ import annotations

from pathlib import Path

from innout_core.config import ManifestVideo, PipelineConfig
from tasks.plan import branches, plan_stages


def test_plan_covers_methods_variants_modes():
    cfg = PipelineConfig.from_preset("tiny-demo", methods=["w", "w+", "pti", "innout"], modes=["video", "image"],
                                     innout_variants=["no-masks", "auto-masks", "user-masks", "w/o L_b", "w/o L_w"])
    with_masks = ManifestVideo(id="a", path=Path("a.mp4"), masks=Path("m.npz"))
    no_masks = ManifestVideo(id="b", path=Path("b.mp4"))
    keys = [b.key for b in branches(cfg, with_masks)]
    assert keys[:3] == ["w", "w+", "pti"] and "user-masks" in keys and "wo-Lb-image" in keys
    assert len(keys) == 2 * (3 + 5)
    assert "user-masks" not in [b.key for b in branches(cfg, no_masks)]  # needs masks in the manifest
    stages = plan_stages(cfg, with_masks)
    assert stages[:2] == ["frames", "face"] and stages[-2:] == ["metrics", "encode"]
    assert len(stages) == len(set(stages))
    assert stages.index("invert-w+") < stages.index("stage-a-no-masks") < stages.index("stage-b-no-masks")
    inn = [b for b in branches(cfg, with_masks) if b.variant == "w/o L_w" and b.mode == "image"][0]
    assert inn.stages == ("invert-w+-image", "stage-a-wo-Lw-image", "stage-b-wo-Lw-image", "edits-wo-Lw-image")
    by_key = {b.key: b for b in branches(cfg, with_masks)}
    # occluder-aware starts: the masked W+ fit with the variant's masks; automatic masks are a stage of their own
    assert by_key["user-masks"].stages == ("invert-w+", "invert-w+-user-masks", "stage-a-user-masks",
                                           "stage-b-user-masks", "edits-user-masks")
    assert by_key["auto-masks-image"].stages == ("invert-w+-image", "masks-auto-image", "invert-w+-auto-masks-image",
                                                 "stage-a-auto-masks-image", "stage-b-auto-masks-image",
                                                 "edits-auto-masks-image")
    assert by_key["pti"].stages == ("invert-w+", "invert-pti", "edits-pti")  # PTI on the W+ fit's pivots
    assert stages.index("masks-auto") < stages.index("invert-w+-auto-masks") < stages.index("stage-a-auto-masks")


def test_downstream_follows_branches():
    from tasks.plan import downstream, planned_stages

    cfg = PipelineConfig.from_preset("tiny-demo").model_copy(update={"methods": ["w", "innout"],
                                                                     "innout_variants": ["no-masks"],
                                                                     "modes": ["video"]})
    v = ManifestVideo(id="a", path=Path("a.mp4"))
    order = plan_stages(cfg, v)
    assert downstream(cfg, v, "frames") == order[1:] and downstream(cfg, v, "face") == order[2:]
    # invert-w+ feeds In-N-Out only, not the W baseline
    assert downstream(cfg, v, "invert-w+") == ["stage-a-no-masks", "stage-b-no-masks", "edits-no-masks",
                                               *order[order.index("metrics"):]]
    assert downstream(cfg, v, "invert-w") == ["edits-w", *order[order.index("metrics"):]]
    assert downstream(cfg, v, "metrics") == [] and downstream(cfg, v, "nope") == []
    masked = cfg.model_copy(update={"innout_variants": ["auto-masks"]})
    # the automatic masks feed the masked start and everything after it
    assert downstream(masked, v, "masks-auto")[:2] == ["invert-w+-auto-masks", "stage-a-auto-masks"]
    assert planned_stages(cfg, v) == order  # every module is installed here
