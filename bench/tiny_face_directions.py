"""InterfaceGAN-style edit directions of ``tiny-face``, fitted to the procedural heads' own parameters.

The training checkpoint of ``bench/train_tiny_face.py`` holds one latent z per training identity (``latents``
[I, 512]) for the heads ``sample_identities(I, seed)``. Each z is mapped to w with the frontal conditioning camera
(as training maps it); every attribute of :data:`ATTRIBUTES` (a number computed from the identity's
:class:`~innout_core.synthetic.heads.HeadParams`: smile, mouth opening, hair / skin lightness, ...) is regressed
on w by ridge regression (closed form, ridge weight chosen by 5-fold cross-validation on the fitting split) over
the identities outside a seeded held-out split. Held-out figures: R^2, Pearson r and the accuracy of the predicted
attribute's side of the fitting split's median. The unit normal d = beta / |beta| is the edit direction
(``w' = w + s d`` raises the predicted attribute by ``s |beta|``).

Render check (held-out identities, no fitting): the generator's change under the edit,
``G(w + s d) - G(w - s d)`` at the frontal camera, is compared with the procedural change of the same identity
from the attribute's low to its high setting (:func:`attribute_pair`, rendered with ``render_head``) by cosine
similarity over pixels; the same for a seeded random unit direction in the same run, as the baseline.

A direction is written (``<out>/<name>.npy``, float32 ``[1, 512]``, unit norm) only when its held-out R^2 reaches
``--min-r2``; ``<out>/directions.json`` records every attribute's figures (shipped or not), the script, seeds,
the checkpoint step and the weights' sha256. The held-out identities' indices and z are written to
``--heldout-out`` (``tests/data/tiny-face/heldout.npz``) for the directions' test.

    .venv/bin/python bench/tiny_face_directions.py --checkpoint .cache/tiny-face/checkpoint.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from innout_core.eg3d.configs import build_generator, weights_dir  # noqa: E402
from innout_core.eg3d.generator import TriPlaneGenerator  # noqa: E402
from innout_core.edit import save_direction  # noqa: E402
from innout_core.errors import BadInputError  # noqa: E402
from innout_core.io import atomic_path, atomic_write_json, hash_file  # noqa: E402
from innout_core.synthetic.heads import HeadParams, frontal_camera, render_head, sample_identities  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def _lightness(c: tuple[float, float, float]) -> float:
    return float(sum(c) / 3)


@dataclass(frozen=True)
class Attribute:
    """One procedural attribute: its value per identity and its low / high settings for the render check."""

    value: Callable[[HeadParams], float]
    low: Callable[[HeadParams], HeadParams]
    high: Callable[[HeadParams], HeadParams]
    meaning: str


_DARK_HAIR, _LIGHT_HAIR = (0.06, 0.05, 0.05), (0.85, 0.7, 0.42)  # the family's black and blond
_DARK_SKIN, _LIGHT_SKIN = (0.36, 0.22, 0.15), (0.96, 0.8, 0.7)


def _skin(p: HeadParams, skin: tuple[float, float, float]) -> HeadParams:
    """The identity with another skin tone; the lips keep their ratio to the skin (as the family draws them)."""
    ratio = tuple(lc / max(sc, 1e-6) for lc, sc in zip(p.lip_color, p.skin_color))
    return replace(p, skin_color=skin, lip_color=tuple(min(1.0, s * r) for s, r in zip(skin, ratio)))


ATTRIBUTES: dict[str, Attribute] = {
    "smile": Attribute(lambda p: p.smile, lambda p: replace(p, smile=-0.6), lambda p: replace(p, smile=1.0),
                       "HeadParams.smile: mouth corners up (> 0) or down (< 0), U[-0.6, 1]"),
    "mouth_open": Attribute(lambda p: p.mouth_open, lambda p: replace(p, mouth_open=0.0),
                            lambda p: replace(p, mouth_open=1.0), "HeadParams.mouth_open in [0, 1]"),
    "eye_openness": Attribute(lambda p: p.eye_openness, lambda p: replace(p, eye_openness=0.35),
                              lambda p: replace(p, eye_openness=1.0), "HeadParams.eye_openness, U[0.35, 1]"),
    "hair_lightness": Attribute(lambda p: _lightness(p.hair_color), lambda p: replace(p, hair_color=_DARK_HAIR),
                                lambda p: replace(p, hair_color=_LIGHT_HAIR), "mean of HeadParams.hair_color RGB"),
    "skin_lightness": Attribute(lambda p: _lightness(p.skin_color), lambda p: _skin(p, _DARK_SKIN),
                                lambda p: _skin(p, _LIGHT_SKIN), "mean of HeadParams.skin_color RGB"),
    "hair_length": Attribute(lambda p: p.hair_length, lambda p: replace(p, hair_length=0.0),
                             lambda p: replace(p, hair_length=1.0), "HeadParams.hair_length in [0, 1]"),
}


# ----------------------------------------------------------------------------------------------------------------
# Fitting


@dataclass
class RidgeFit:
    """``y ~ (w - mean) . beta + intercept`` on the fitting split."""

    beta: torch.Tensor  # [512] float64
    mean: torch.Tensor  # [512] float64
    intercept: float
    alpha: float

    def predict(self, w: torch.Tensor) -> torch.Tensor:
        return (w.double() - self.mean) @ self.beta + self.intercept

    @property
    def direction(self) -> torch.Tensor:
        """Unit normal [1, 512] float32."""
        return (self.beta / self.beta.norm().clamp_min(1e-12)).float()[None]


def _ridge(w: torch.Tensor, y: torch.Tensor, alpha: float) -> RidgeFit:
    x = w.double()
    mean, ym = x.mean(0), float(y.mean())
    xc = x - mean
    beta = torch.linalg.solve(xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y.double() - ym))
    return RidgeFit(beta, mean, ym, alpha)


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination (1 - SS_res / SS_tot; negative when worse than the mean)."""
    y = y.double()
    return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum().clamp_min(1e-12))


def fit_ridge_cv(w: torch.Tensor, y: torch.Tensor, folds: int = 5, seed: int = 0) -> tuple[RidgeFit, dict]:
    """Ridge weight by ``folds``-fold cross-validated R^2 over :data:`RIDGE_GRID`, then the fit on all of ``w``.

    Args:
        w: [N, 512] latents; y: [N] attribute values.
    Returns:
        The fit and ``{alpha: mean CV R^2}``.
    """
    n = w.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = order.chunk(folds)
    scores: dict[float, float] = {}
    for alpha in RIDGE_GRID:
        r2 = []
        for k in range(folds):
            val = parts[k]
            trn = torch.cat([parts[j] for j in range(folds) if j != k])
            r2.append(r2_score(_ridge(w[trn], y[trn], alpha).predict(w[val]), y[val]))
        scores[alpha] = float(np.mean(r2))
    best = max(scores, key=scores.get)
    return _ridge(w, y, best), scores


# ----------------------------------------------------------------------------------------------------------------
# Render check


@torch.no_grad()
def render_w(G: TriPlaneGenerator, w: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] of w [N, 512] (broadcast to every style vector) at camera [1, 25], fixed ray
    samples."""
    ws = w[:, None].expand(-1, G.num_ws, -1)
    return G.synthesis(ws, camera.expand(w.shape[0], -1), noise_mode="const",
                       generator=torch.Generator().manual_seed(0)).image


def procedural_change(params: list[HeadParams], attribute: Attribute, resolution: int = 128) -> torch.Tensor:
    """[N, 3, R, R]: render(high) - render(low) of each identity at the frontal camera (16 + 16 samples)."""
    cam = frontal_camera()
    out = []
    for p in params:
        lo = render_head(attribute.low(p), cam, resolution, n_coarse=16, n_fine=16).image
        hi = render_head(attribute.high(p), cam, resolution, n_coarse=16, n_fine=16).image
        out.append((hi - lo)[0])
    return torch.stack(out)


def edit_change(G: TriPlaneGenerator, w: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """[N, 3, R, R]: G(w + s d) - G(w - s d) at the frontal camera."""
    d = direction.reshape(1, -1).to(w)
    return render_w(G, w + strength * d, frontal_camera()) - render_w(G, w - strength * d, frontal_camera())


def change_cosine(edit: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-identity cosine [N] between two image changes (flattened, after area-downsampling to 64^2 so a
    one-pixel misplacement does not count as disagreement)."""
    a = F.interpolate(edit, size=(64, 64), mode="area").flatten(1)
    b = F.interpolate(truth, size=(64, 64), mode="area").flatten(1)
    return F.cosine_similarity(a, b, dim=1)


def random_direction(seed: int, dim: int = 512) -> torch.Tensor:
    """A seeded random unit direction [1, dim] (the render check's baseline)."""
    d = torch.randn(1, dim, generator=torch.Generator().manual_seed(seed))
    return d / d.norm()


# ----------------------------------------------------------------------------------------------------------------
# Script


def load_training(checkpoint: Path, generator: str) -> tuple[TriPlaneGenerator, torch.Tensor, dict]:
    """The named generator, the checkpoint's latents z [I, 512] and its settings; the checkpoint's mapping network
    must be the generator's (else w would not be the shipped generator's w)."""
    if not checkpoint.is_file():
        raise BadInputError("no training checkpoint (run bench/train_tiny_face.py first)", checkpoint)
    try:
        blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
        latents, model, config, step = blob["latents"].float(), blob["model"], blob["config"], int(blob["step"])
    except Exception as err:  # torch raises several types for damaged files
        raise BadInputError(f"unreadable training checkpoint ({type(err).__name__})", checkpoint) from None
    G = build_generator(generator).requires_grad_(False)
    mine = G.state_dict()
    differ = [k for k, v in model.items() if k.startswith("backbone.mapping.") and not k.endswith("w_avg")
              and not torch.equal(v, mine[k])]
    if differ:
        raise BadInputError(f"the checkpoint's mapping network (step {step}) is not {generator!r}'s (first: "
                            f"{differ[0]}); export this checkpoint first", checkpoint)
    return G, latents, {"config": config, "step": step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / ".cache" / "tiny-face" / "checkpoint.pt")
    parser.add_argument("--generator", default="tiny-face", help="generator whose mapping the checkpoint trained")
    parser.add_argument("--out", type=Path, default=None, help="directions folder (default: the generator's "
                        "shipped weights folder / directions)")
    parser.add_argument("--heldout-out", type=Path, default=ROOT / "tests" / "data" / "tiny-face" / "heldout.npz")
    parser.add_argument("--heldout", type=int, default=32, help="identities held out of the fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the CV folds and the baseline")
    parser.add_argument("--min-r2", type=float, default=0.5, help="ship a direction only at this held-out R^2")
    parser.add_argument("--strength", type=float, default=2.2, help="s of the render check (the demo's strength)")
    parser.add_argument("--check-ids", type=int, default=8, help="held-out identities rendered in the check")
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    try:
        G, z, info = load_training(a.checkpoint, a.generator)
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n = z.shape[0]
    seed_ids = int(info["config"]["seed"])
    params = sample_identities(n, seed_ids)
    with torch.no_grad():
        w = G.mapping(z, frontal_camera().expand(n, -1))[:, 0].double()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed))
    test, fit = order[: a.heldout].sort().values, order[a.heldout:].sort().values
    check = test[: a.check_ids]
    out = a.out or (weights_dir(a.generator) / "directions")
    out.mkdir(parents=True, exist_ok=True)
    baseline = random_direction(a.seed + 1)
    records: dict[str, dict] = {}
    print(f"{'attribute':<16}{'alpha':>8}{'CV R2':>8}{'test R2':>9}{'test r':>8}{'side acc':>9}{'|beta|':>8}"
          f"{'std w.d':>8}{'cos edit':>9}{'cos rand':>9}  shipped")
    for name, attr in ATTRIBUTES.items():
        y = torch.tensor([attr.value(p) for p in params], dtype=torch.float64)
        ridge, cv = fit_ridge_cv(w[fit], y[fit], seed=a.seed)
        pred = ridge.predict(w[test])
        median = float(y[fit].median())
        side = float(((pred > median) == (y[test] > median)).double().mean())
        r = float(torch.corrcoef(torch.stack([pred, y[test]]))[0, 1])
        d = ridge.direction
        truth = procedural_change([params[int(i)] for i in check], attr)
        cos_edit = change_cosine(edit_change(G, w[check].float(), d, a.strength), truth)
        cos_rand = change_cosine(edit_change(G, w[check].float(), baseline, a.strength), truth)
        rec = {
            "meaning": attr.meaning,
            "ridge_alpha": ridge.alpha,
            "cv_r2_by_alpha": {str(k): v for k, v in cv.items()},
            "heldout_r2": r2_score(pred, y[test]),
            "heldout_pearson_r": r,
            "heldout_side_of_median_accuracy": side,
            "attribute_per_unit_step": float(ridge.beta.norm()),
            "std_of_identities_along_direction": float(((w - ridge.mean) @ d[0].double()).std()),
            "attribute_std": float(y.std()),
            "render_check_cosine_mean": float(cos_edit.mean()),
            "render_check_cosine_per_identity": [float(c) for c in cos_edit],
            "render_check_random_direction_cosine_mean": float(cos_rand.mean()),
        }
        rec["shipped"] = rec["heldout_r2"] >= a.min_r2
        path = out / f"{name}.npy"
        if rec["shipped"]:
            save_direction(d, path)
            rec["file"] = path.name
            rec["sha256"] = hash_file(path)
        elif path.is_file():
            path.unlink()  # an earlier fit shipped it; this one does not support it
        records[name] = rec
        print(f"{name:<16}{ridge.alpha:>8g}{cv[ridge.alpha]:>8.3f}{rec['heldout_r2']:>9.3f}{r:>8.3f}{side:>9.3f}"
              f"{rec['attribute_per_unit_step']:>8.3f}{rec['std_of_identities_along_direction']:>8.3f}"
              f"{rec['render_check_cosine_mean']:>9.3f}{rec['render_check_random_direction_cosine_mean']:>9.3f}"
              f"  {'yes' if rec['shipped'] else 'no'}")
    shipped_w = weights_dir(a.generator) / "model.safetensors"
    payload = {
        "script": "bench/tiny_face_directions.py",
        "generator": a.generator,
        "weights_sha256": hash_file(shipped_w),
        "checkpoint_step": info["step"],
        "identities": {"n": n, "seed": seed_ids, "heldout": [int(i) for i in test],
                       "render_check": [int(i) for i in check], "split_seed": a.seed},
        "mapping_camera": "frontal (yaw 0, pitch 0, radius 2.7, pivot (0, 0, 0.2), focal 4.2647)",
        "fit": "ridge regression of the attribute on w (the mapped z), closed form; alpha by 5-fold CV R^2 on "
               "the fitting identities; direction = beta / |beta|",
        "render_check": f"cosine between G(w + s d) - G(w - s d) and render_head(high) - render_head(low) of the "
                        f"same held-out identity, frontal camera, 64^2 area-downsampled, s = {a.strength}; "
                        f"baseline: a random unit direction (seed {a.seed + 1})",
        "min_heldout_r2_to_ship": a.min_r2,
        "strength": a.strength,
        "attributes": records,
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(out / "directions.json", payload)
    a.heldout_out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.heldout_out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, index=test.numpy(), z=z[test].numpy().astype(np.float32), seed=np.int64(seed_ids),
                 n_identities=np.int64(n), checkpoint_step=np.int64(info["step"]))
    print(f"wrote {out / 'directions.json'} and {a.heldout_out} ({payload['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
