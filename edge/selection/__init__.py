"""Vision-token selection on the edge: scorers (one importance per patch), reducers, budgets.

- :mod:`edge.selection.scorers` - ``cls-attn``, ``attn-received``, ``l2-norm``,
  ``text-sim`` (language-guided), ``random``, ``grid``;
- :mod:`edge.selection.reducers` - ``topk``, ``recoverable``, ``visionzip``, ``tome``,
  ``prumerge``;
- :mod:`edge.selection.budgets` - fixed k, ratio, adaptive (IQR / LOF outlier counts).

Everything works on NumPy arrays of one sample (a :class:`TokenContext`); the edge
method builds the contexts from the backend's outputs.
"""

from semcom.registry import declare

declare(
    "scorer",
    {
        "cls-attn": "edge.selection.scorers:cls_attn",
        "attn-received": "edge.selection.scorers:attn_received",
        "l2-norm": "edge.selection.scorers:l2_norm",
        "text-sim": "edge.selection.scorers:text_sim",
        "random": "edge.selection.scorers:random_score",
        "grid": "edge.selection.scorers:grid_score",
    },
)
declare(
    "reducer",
    {
        "topk": "edge.selection.reducers:topk",
        "recoverable": "edge.selection.reducers:recoverable",
        "visionzip": "edge.selection.reducers:visionzip",
        "tome": "edge.selection.reducers:tome",
        "prumerge": "edge.selection.reducers:prumerge",
    },
)
