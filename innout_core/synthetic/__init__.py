"""Test data with known truth; no pipeline stage imports this package (only the demo's data maker, ``flows/demo.py``).

- :mod:`~innout_core.synthetic.videos`: ground-truth face videos (known latents, cameras, 3D occluder, clean frames,
  true masks) rendered by a generator; its names are re-exported here (``innout_core.synthetic.benchmark_videos``).
- :mod:`~innout_core.synthetic.heads`: a procedural 3D head family rendered in EG3D's framing (the ``tiny-face``
  generator's training data).
- :mod:`~innout_core.synthetic.testclips`: face clips with known motion and occluders made from a shipped photograph
  (face tracking tests and benchmark).
- :mod:`~innout_core.synthetic.eg3d_writer`: official-format EG3D pickles for the checkpoint reader's tests.
"""

from innout_core.synthetic import videos as _videos
from innout_core.synthetic.videos import *  # noqa: F403 - the ground-truth videos' public names

__all__ = list(_videos.__all__)
