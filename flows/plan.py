"""Re-export of :mod:`tasks.plan` (the stage plan moved to the task layer so that tasks never import flows)."""

from __future__ import annotations

from tasks.plan import Branch, branches, plan_stages, variant_slug

__all__ = ["Branch", "branches", "plan_stages", "variant_slug"]
