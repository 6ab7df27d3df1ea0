"""Names shared by the tables, the plots and the report: method labels, row order, which variants are ablations
and which edits are not semantic. Imports nothing of ``reports`` (both tables and plots import it)."""

from __future__ import annotations

__all__ = ["ABLATION_VARIANTS", "METHOD_LABELS", "METHOD_ORDER", "NON_SEMANTIC_EDITS", "method_label"]

#: Variants that are ablations of In-N-Out (Table 3 only).
ABLATION_VARIANTS = ("w/o L_b", "w/o L_w")
#: Edits that are not semantic (no identity-after-edit column in Tables 2–3): OOD removal and novel views.
NON_SEMANTIC_EDITS = ("remove_ood", "novel_view")
#: Display names, in the paper's row order (ours first).
METHOD_LABELS = {"innout": "In-N-Out", "pti": "PTI", "w+": "W+", "w": "W"}
#: Method ids in the paper's row order.
METHOD_ORDER = tuple(METHOD_LABELS)


def method_label(method: str, variant: str) -> str:
    """Human row label, e.g. ``In-N-Out (auto-masks)``."""
    base = METHOD_LABELS.get(method, method)
    return f"{base} ({variant})" if variant else base
