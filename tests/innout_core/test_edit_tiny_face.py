"""``tiny-face``'s shipped edit directions: the ``tiny-demo`` edit applies the generator's own direction, and that
direction changes held-out heads' renders the way the procedural attribute changes them (a random direction does
not)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from innout_core.edit import EditConfig, SyntheticDirectionConfig, load_direction, materialise_edits
from innout_core.eg3d import configs
from innout_core.eg3d.configs import CONFIGS, build_generator, edit_direction_file
from innout_core.errors import CheckpointError
from innout_core.synthetic.heads import frontal_camera, sample_identities
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
DIRECTIONS = REPO / "innout_core" / "eg3d" / "weights" / "tiny-face" / "directions"
HELDOUT = REPO / "tests" / "data" / "tiny-face" / "heldout.npz"


td = load_script(REPO / "bench" / "tiny_face_directions.py", "tiny_face_directions")


@pytest.fixture(scope="module")
def face_G():
    return build_generator("tiny-face").requires_grad_(False)


def test_tiny_demo_edit_applies_the_generators_shipped_direction(face_G, tmp_path: Path) -> None:
    cfg = EditConfig(synthetic=SyntheticDirectionConfig(strength=1.5, layers=[0, 1]))
    name, source = edit_direction_file("tiny-face")
    assert name == CONFIGS["tiny-face"].edit_direction and source == DIRECTIONS / f"{name}.npy"
    mat = materialise_edits(cfg, face_G, tmp_path / "a", generator="tiny-face")
    (edit,) = mat.interfacegan
    assert mat.synthetic is None and edit.name == name and edit.strength == 1.5 and edit.layers == [0, 1]
    assert np.array_equal(np.load(edit.path), np.load(source)) and np.load(edit.path).shape == (1, 512)
    # `tiny` ships none, and a checkpoint (no name) neither: both keep the direction made from the generator
    assert edit_direction_file("tiny") is None and edit_direction_file("my-checkpoint") is None
    for gen in ("tiny", None):
        other = materialise_edits(cfg, face_G, tmp_path / str(gen), generator=gen).interfacegan[0]
        assert other.name == "brighter"
        assert not np.allclose(np.load(other.path), np.load(source))


def test_a_named_direction_that_is_not_installed_fails_in_one_line(face_G, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "tiny-face"
    shutil.copytree(DIRECTIONS.parent, copy)
    shutil.rmtree(copy / "directions")
    monkeypatch.setattr(configs, "WEIGHTS_ROOT", tmp_path)
    with pytest.raises(CheckpointError, match="not installed") as err:
        materialise_edits(EditConfig(synthetic=SyntheticDirectionConfig()), face_G, tmp_path / "out", generator="tiny-face")
    assert "\n" not in str(err.value) and "directions" in str(err.value)


def test_directions_json_records_the_fit_of_every_shipped_direction() -> None:
    info = json.loads((DIRECTIONS / "directions.json").read_text())
    shipped = {k for k, v in info["attributes"].items() if v["shipped"]}
    assert shipped == {p.stem for p in DIRECTIONS.glob("*.npy")} and CONFIGS["tiny-face"].edit_direction in shipped
    weights = DIRECTIONS.parent / "model.safetensors"
    assert info["weights_sha256"] == json.loads((DIRECTIONS.parent / "config.json").read_text())["weights"]["sha256"]
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    for name in shipped:
        rec = info["attributes"][name]
        d = load_direction(DIRECTIONS / f"{name}.npy", n_ws=1)
        torch.testing.assert_close(d.norm(), torch.tensor(1.0))
        assert rec["heldout_r2"] >= info["min_heldout_r2_to_ship"]


@pytest.mark.parametrize("name", ["hair_lightness", "skin_lightness"])
def test_direction_changes_heldout_renders_like_the_attribute(face_G, name: str) -> None:
    """Held-out identities (not in the fit): G(w + s d) - G(w - s d) points the same way as the procedural change
    from the attribute's low to its high setting; a random unit direction does not, nor does the reversed one."""
    data = np.load(HELDOUT)
    idx, z = data["index"][:4], torch.from_numpy(data["z"][:4])
    params = sample_identities(int(data["n_identities"]), int(data["seed"]))
    fit = json.loads((DIRECTIONS / "directions.json").read_text())
    # these identities were held out of the fit of the shipped directions, for the shipped generator's step
    assert [int(i) for i in data["index"]] == fit["identities"]["heldout"]
    assert int(data["checkpoint_step"]) == fit["checkpoint_step"]
    with torch.no_grad():
        w = face_G.mapping(z, frontal_camera().expand(len(z), -1))[:, 0]
    truth = td.procedural_change([params[int(i)] for i in idx], td.ATTRIBUTES[name])
    d = load_direction(DIRECTIONS / f"{name}.npy", n_ws=1)
    cos = td.change_cosine(td.edit_change(face_G, w, d, 2.2), truth)
    rand = td.change_cosine(td.edit_change(face_G, w, td.random_direction(123), 2.2), truth)
    assert float(cos.min()) > 0.6, cos
    assert float(rand.abs().mean()) < 0.35, rand
    reverse = td.change_cosine(td.edit_change(face_G, w, -d, 2.2), truth)
    assert float(reverse.max()) < -0.6, reverse
