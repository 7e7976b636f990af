"""A user's own part, named in a config as package.module:Name, reaches the pipeline."""

import numpy as np

from semcom.config import load_config


def last_first(ctx, cfg=None):
    """A scorer that prefers later patches (float64 [P])."""
    return np.arange(ctx.num_patches, dtype=np.float64)


def test_plugin_scorer_from_config_is_used_by_selection():
    from edge.selection.scorers import score

    cfg = load_config(None, ["edge.select.scorer=tests.test_plugins:last_first"])
    assert cfg.edge.select.scorer == "tests.test_plugins:last_first"

    class Ctx:
        num_patches = 5
        cache: dict = {}

    s = score(cfg.edge.select.scorer, Ctx(), cfg.edge.select)
    assert s.tolist() == [0, 1, 2, 3, 4]


def test_unknown_plugin_module_is_a_clear_error():
    import pytest

    from semcom.errors import SemcomError
    from semcom.registry import get

    with pytest.raises((SemcomError, ImportError), match="no_such_pkg"):
        get("scorer", "no_such_pkg.mod:fn")
