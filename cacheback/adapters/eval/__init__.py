"""Hit-quality evaluation on labelled data (the ``cacheback eval`` command)."""

from ._hit_eval import (
    Counts,
    EmbedFn,
    EvalReport,
    embed_texts,
    eval_main,
    format_report,
    load_pairs,
    load_retrieval,
    plot_pr,
    run_pairwise,
    run_retrieval,
)
from ._synthesis_eval import synthesis_eval_main

__all__ = [
    "Counts",
    "EmbedFn",
    "EvalReport",
    "embed_texts",
    "eval_main",
    "format_report",
    "load_pairs",
    "load_retrieval",
    "plot_pr",
    "run_pairwise",
    "run_retrieval",
    "synthesis_eval_main",
]
