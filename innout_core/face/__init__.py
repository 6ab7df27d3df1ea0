"""innout_core/face."""
