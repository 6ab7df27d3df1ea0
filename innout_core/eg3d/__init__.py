"""innout_core/eg3d."""
