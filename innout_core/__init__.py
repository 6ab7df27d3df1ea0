"""innout_core: the science of innout as a plain PyTorch library (EG3D, the In-N-Out method, faces, video,
metrics, the run store). No Prefect or Dask import anywhere in this package."""

__version__ = "0.1.0"
__all__ = ["__version__"]
