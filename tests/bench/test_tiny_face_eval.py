"""bench/tiny_face_eval.py --quick: the held-out evaluation runs end to end and writes its JSON and PNG; its figures
agree with an independent PSNR of the fitted latent's render."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


te = load_script(ROOT / "bench" / "tiny_face_eval.py", "tiny_face_eval")


def test_quick_run_writes_the_table_fields(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    assert te.main(["--quick", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["bench"] == "tiny_face_eval" and r["quick"] is True
    assert r["settings"]["identities"] == 2 and r["settings"]["identity_seed"] == 1000  # not the training seed 0
    assert r["inversion"]["residual_weight"] == 0.0 and r["inversion"]["method"] == "w+"
    assert set(r["generators"]) == {"tiny-face", "tiny"}
    for g in r["generators"].values():
        assert len(g["rows"]) == 2
        for row in g["rows"]:
            assert len(row["psnr_input_views"]) == 2 and len(row["psnr_novel_views"]) == 1
            assert all(math.isfinite(x) and 0 < x < 60 for x in row["psnr_input_views"] + row["psnr_novel_views"])
        flat = [x for row in g["rows"] for x in row["psnr_input_views"]]
        assert abs(g["psnr_input_mean"] - sum(flat) / len(flat)) < 1e-5
        assert g["psnr_input_min"] == min(flat)
    diff = r["tiny_face_minus_tiny_db"]
    assert abs(diff["psnr_novel_mean"] - (r["generators"]["tiny-face"]["psnr_novel_mean"]
                                          - r["generators"]["tiny"]["psnr_novel_mean"])) < 1e-9
    # a head generator fits held-out heads better than random weights, even after 3 steps
    assert diff["psnr_input_mean"] > 3 and diff["psnr_novel_mean"] > 3
    assert out.with_suffix(".png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "tiny-face" in table and "difference" in table


def test_psnr_is_that_of_the_latent_render() -> None:
    """The evaluation's figure for one view equals a PSNR computed here from the same fit, by hand."""
    from innout_core.eg3d.configs import build_generator
    from innout_core.inversion import invert_video, render_inversion
    from innout_core.synthetic.heads import sample_identities

    p = sample_identities(1, 1000)[0]
    d = {"index": 0, **te.identity_views(p, 0, 2, 1, 1000)}
    assert torch.allclose(d["input_cameras"][0], te.frontal_camera()[0])
    cfg = te.inversion_config(2, 2)
    summary, renders = te.evaluate_generator("tiny-face", [d], cfg, 1000)
    G = build_generator("tiny-face").requires_grad_(False)
    inv = invert_video(G, d["input"], d["input_cameras"], cfg, torch.Generator().manual_seed(1000))
    assert torch.equal(inv.ws[0], inv.ws[1])  # rho = 0: one latent for every view
    novel = render_inversion(G, inv.__class__(**{**inv.__dict__, "ws": inv.w_canonical}), d["novel_cameras"],
                             torch.Generator().manual_seed(1000 + 99))
    mse = float((novel.double() - d["novel"].double()).pow(2).mean())
    assert abs(summary["rows"][0]["psnr_novel_views"][0] - 10 * math.log10(4 / mse)) < 1e-3
    assert torch.equal(renders[0][1], novel)
