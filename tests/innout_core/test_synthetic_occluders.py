"""Occluders a head family cannot draw (hand, glasses, microphone), the `tiny-face` suite on held-out identities,
and the `tiny` suite unchanged by them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from innout_core.eg3d.configs import build_generator
from innout_core.errors import BadInputError
from innout_core.synthetic import (
    HELD_OUT_SEED,
    OccluderConfig,
    benchmark_videos,
    ground_truth_suite,
    make_ground_truth_video,
    occluder_field,
    suite_names,
    suite_preview,
)
from innout_core.synthetic.videos import MIC_HANDLE_COLOUR

#: The `tiny` suite at 3 frames, seed 0, rendered by the code before the new kinds existed (commit 16aefa0):
#: (mean of the frames, mean |frames|, sum of the occluder opacity, occluder pixels of the masks).
TINY_SUITE_REFERENCE = {
    "box": (-0.6063089666557365, 0.7357216262070728, 416.7421512105748, 6403),
    "sphere": (-0.6532149062386452, 0.6601472226472348, 118.51876473096846, 1803),
    "bar": (-0.43424321190968684, 0.5264725341898198, 740.8188136300311, 11968),
    "static": (-0.7031023720545717, 0.7096470120270371, 549.5414419846174, 8767),
}
#: Torch seeds that bench/train_tiny_face.py used for the shipped weights (model, probe, latents/batches, preview)
#: and its camera seeds 1_000_003 * (seed + 1) + identity for 160 identities.
TRAINING_SEEDS = {0, 1, 7, 123} | set(range(1_000_003, 1_000_003 + 160))


@pytest.fixture(scope="module")
def face_G():
    return build_generator("tiny-face").requires_grad_(False)


@pytest.fixture(scope="module")
def face_videos(face_G):
    suite = ground_truth_suite(3, 0, "tiny-face")
    return {k: make_ground_truth_video(face_G, suite[k]) for k in ("hand", "glasses", "microphone")}


def test_tiny_suite_is_unchanged():
    G = build_generator("tiny").requires_grad_(False)
    suite = ground_truth_suite(3, 0)
    assert list(suite) == ["box", "sphere", "bar", "static"] and suite_names() == tuple(suite)
    for name, (mean, abs_mean, opacity, pixels) in TINY_SUITE_REFERENCE.items():
        v = make_ground_truth_video(G, suite[name])
        assert float(v.frames.double().mean()) == pytest.approx(mean, rel=1e-6, abs=1e-7), name
        assert float(v.frames.double().abs().mean()) == pytest.approx(abs_mean, rel=1e-6), name
        assert float(v.opacity.double().sum()) == pytest.approx(opacity, rel=1e-5), name
        assert abs(int((1 - v.masks).sum()) - pixels) <= 2, name  # a pixel at exactly 0.5 may flip across CPUs


def test_new_kinds_analytic_shapes():
    feats = torch.full((8,), 0.5)
    centre = torch.tensor([[0.0, 0.0, 0.3]])

    def b(cfg: OccluderConfig, pts: list[tuple[float, float, float]], angle: float = 0.0) -> list[float]:
        p = torch.tensor([pts]) + centre[:, None]
        return occluder_field(p, centre, cfg, feats, angle)[2][0, :, 0].tolist()

    hand = OccluderConfig(kind="hand", size=0.1, thickness=0.1, sharpness=800.0)
    # palm centre, palm centre near the front face, beyond the thickness, a middle fingertip, between two tips, above
    inside, front, behind, tip, gap, above = b(hand, [(0, 0, 0), (0, 0, 0.09), (0, 0, 0.12), (0.024, 0.2, 0),
                                                      (0.0, 0.2, 0), (0.0, 0.3, 0)])
    assert inside > 0.99 and front > 0.98 and behind < 0.01 and tip > 0.99 and gap < 0.05 and above < 0.01
    glasses = OccluderConfig(kind="glasses", size=0.04, thickness=0.1, sharpness=800.0)
    R, w, cx = 0.04, 0.22 * 0.04, 1.5 * 0.04
    lens, rim, temple_end, outside = b(glasses, [(cx, 0, 0), (cx + R - w, 0, 0), (cx + 3 * R, 0.35 * R, -6 * R),
                                                 (cx, 2 * R, 0)])
    assert lens < 1e-3 and rim > 0.99 and temple_end > 0.99 and outside < 1e-3  # see-through lens, frame opaque
    mic = OccluderConfig(kind="microphone", size=0.05, thickness=0.1, sharpness=400.0)
    ball, handle, beside = b(mic, [(0, 0, 0), (0, -0.25, 0), (0.04, -0.25, 0)])
    assert ball > 0.99 and handle > 0.99 and beside < 0.01
    # an in-plane rotation by 90 degrees (counter-clockwise) turns the handle from down to the image right
    down, right = b(mic, [(0, -0.25, 0), (0.25, 0, 0)], angle=math.pi / 2)
    assert down < 0.01 and right > 0.99
    # the handle's colour, shaded as a cylinder facing the camera: light (0, 0.5, 1) / |.| on the normal (0, 0, 1)
    col = occluder_field(torch.tensor([[[0.0, -0.25, 0.3]]]), centre, mic, feats)[0][0, 0, :3]
    shade = 0.55 + 0.45 / math.sqrt(1.25)
    torch.testing.assert_close(col, torch.tensor(MIC_HANDLE_COLOUR) * shade)
    # the same colour at every depth inside (a sample anywhere on the ray sees the front relief)
    cols = occluder_field(torch.tensor([[[0.0, 0.02, 0.3 + z] for z in (-0.08, 0.0, 0.08)]]), centre, hand, feats)[0]
    torch.testing.assert_close(cols[0, 0], cols[0, 1])
    torch.testing.assert_close(cols[0, 1], cols[0, 2])


@pytest.mark.parametrize("kind,lo,hi", [("hand", 0.2, 0.6), ("glasses", 0.05, 0.3), ("microphone", 0.08, 0.45)])
def test_each_kind_occludes_a_plausible_part_of_the_face(face_videos, kind, lo, hi):
    v = face_videos[kind]
    face = (v.clean.mean(dim=1, keepdim=True) > -0.8).float()  # the head (black background at -1)
    ood = 1 - v.masks
    occ = v.occluded()
    assert bool(occ[1:].all())  # the microphone enters at frame 1 of 3, the others are there from the start
    share_of_face = (ood * face).flatten(1).sum(1) / face.flatten(1).sum(1)
    on_face = (ood * face).flatten(1).sum(1) / ood.flatten(1).sum(1).clamp(min=1)
    assert all(lo < float(x) < hi for x in share_of_face[occ]), share_of_face
    assert all(float(x) > 0.75 for x in on_face[occ]), on_face  # it is in front of the face, not beside it


def test_masks_are_the_thresholded_opacity_and_the_composite_is_exact(face_videos):
    for kind, v in face_videos.items():
        H = v.frames.shape[-1]
        up = F.interpolate(v.opacity, size=(H, H), mode="bilinear", align_corners=False)
        assert torch.equal(v.masks, (up < 0.5).float()), kind
        op = v.opacity[:, 0]
        free = op < 1e-6  # rays the occluder does not touch render exactly the clean face
        torch.testing.assert_close(v.raw.permute(1, 0, 2, 3)[:, free], v.clean_raw.permute(1, 0, 2, 3)[:, free],
                                   atol=1e-4, rtol=0)
        assert float(op.max()) > 0.98, kind  # opaque where it is
    mic = face_videos["microphone"]
    assert torch.equal(mic.frames[0], mic.clean[0]) and float(mic.opacity[0].max()) == 0.0  # before it enters


def test_glasses_are_see_through(face_videos):
    v = face_videos["glasses"]
    for t in range(v.frames.shape[0]):
        ood = 1 - v.masks[t, 0]
        ys, xs = torch.nonzero(ood > 0.5, as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert float(ood.sum() / box) < 0.7  # the frame only: the lenses inside its bounding box are not occluder


def test_deterministic_given_the_seed(face_G, face_videos):
    cfg = ground_truth_suite(3, 0, "tiny-face")["hand"]
    again = make_ground_truth_video(face_G, cfg)
    v = face_videos["hand"]
    assert torch.equal(again.frames, v.frames) and torch.equal(again.masks, v.masks)
    assert torch.equal(again.opacity, v.opacity)
    other = make_ground_truth_video(face_G, ground_truth_suite(3, 1, "tiny-face")["hand"])
    assert not torch.equal(other.ws, v.ws)  # another suite seed, another identity


def test_tiny_face_suite_uses_held_out_identities():
    suite = ground_truth_suite(8, 0, "tiny-face")
    assert tuple(suite) == ("hand", "bar", "glasses", "microphone", "static") == suite_names("tiny-face")
    order = ("hand", "glasses", "microphone", "bar", "static")  # k = 0..4
    seeds = [suite[k].seed for k in order]
    assert seeds == [HELD_OUT_SEED + k for k in range(5)]
    assert [ground_truth_suite(8, 2, "tiny-face")[k].seed for k in order] == [HELD_OUT_SEED + 200 + k
                                                                              for k in range(5)]
    assert not set(seeds) & TRAINING_SEEDS
    assert all(c.truncation_psi == 0.7 for c in suite.values())
    assert [c.occluder.kind for c in suite.values()] == ["hand", "bar", "glasses", "microphone", "box"]
    assert suite["static"].occluder.motion == (0.0, 0.0) and suite["microphone"].occluder.enter_frame == 2
    assert benchmark_videos(8, 0, "tiny-face") == [suite["hand"], suite["glasses"], suite["microphone"]]
    with pytest.raises(BadInputError, match="no ground-truth suite for generator 'ffhq512-128'"):
        ground_truth_suite(8, 0, "ffhq512-128")  # type: ignore[arg-type]


def test_held_out_identities_are_heads(face_G, face_videos):
    """Fresh z mapped with psi 0.7 land in the trained region: the clean frames are a head on black like the
    training renders, framed as EG3D's FFHQ crops (centred, 25-75 % of the image)."""
    for v in face_videos.values():
        head = (v.clean.mean(dim=1, keepdim=True) > -0.8).float()
        assert all(0.25 < float(x) < 0.75 for x in head.flatten(1).mean(1))
        cols = head[:, 0].mean(dim=1)  # [T, W] head coverage per column: centred
        centre = (cols * torch.arange(cols.shape[-1])).sum(-1) / cols.sum(-1)
        assert all(abs(float(c) - cols.shape[-1] / 2) < cols.shape[-1] * 0.1 for c in centre)


def test_suite_preview_tiles_input_mask_clean():
    G = build_generator("tiny").requires_grad_(False)
    img = suite_preview(G, "tiny", n_frames=3, seed=0)
    H = G.init_kwargs["img_resolution"]
    assert img.shape == (3, 3 * H, 4 * H)
    sphere = make_ground_truth_video(G, ground_truth_suite(3, 0)["sphere"])  # occluded from frame 2 only
    col = img[:, :, H : 2 * H]
    assert torch.equal(col[:, :H], sphere.frames[2].clamp(-1, 1)) and torch.equal(col[:, 2 * H :], sphere.clean[2].clamp(-1, 1))
    assert torch.equal(col[0, H : 2 * H], 1 - 2 * sphere.masks[2, 0])
