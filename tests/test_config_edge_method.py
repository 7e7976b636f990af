"""``edge.method`` takes the built-in methods, registered ones and ``package.module:Class``."""

from __future__ import annotations

import pytest

from semcom import registry
from semcom.config import load_config
from semcom.config.edge import EDGE_METHODS
from semcom.errors import ConfigError
from semcom.types import EdgeResult


class EchoEdge:
    """A user's edge method: one empty description list per sample, no model needed."""

    needs_backend = False

    def __init__(self, cfg, backend=None):
        self.cfg = cfg

    def encode(self, samples, task):
        return [EdgeResult(s.sample_id, [], {"tokens_sent": 0}) for s in samples]


def test_builtin_names_match_the_declared_edge_methods():
    import edge.methods  # noqa: F401  (declares the built-in classes)

    assert set(EDGE_METHODS) == set(registry.MANIFEST["edge-method"])
    for name in EDGE_METHODS:
        assert load_config(None, [f"edge.method={name}"]).edge.method == name


def test_unknown_method_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["edge.method=jpge"])
    err = exc.value
    assert err.key == "edge.method"
    assert "did you mean 'jpeg'" in err.message
    for name in EDGE_METHODS:
        assert name in err.message
    assert "package.module:Class" in err.message


def test_a_malformed_import_path_is_rejected():
    with pytest.raises(ConfigError, match="edge.method"):
        load_config(None, ["edge.method=not a path:"])


def test_import_path_reaches_the_edge_pipeline():
    from edge.pipeline import EdgePipeline
    from semcom.data import load_samples

    cfg = load_config(None, [f"edge.method={__name__}:EchoEdge", "data.num_images=2"])
    assert cfg.edge.method == f"{__name__}:EchoEdge"
    pipe = EdgePipeline(cfg)
    assert isinstance(pipe.method, EchoEdge)
    samples = load_samples(cfg.data, "caption", seed=cfg.run.seed)
    results = pipe.encode(samples, "caption")
    assert [r.sample_id for r in results] == [s.sample_id for s in samples]
    assert all("edge_s" in r.info for r in results)


def test_a_registered_name_is_accepted():
    with pytest.raises(ConfigError):
        load_config(None, ["edge.method=echo-test"])
    registry.register("edge-method", "echo-test")(EchoEdge)
    try:
        cfg = load_config(None, ["edge.method=echo-test"])
        assert cfg.edge.method == "echo-test"
        assert registry.get("edge-method", cfg.edge.method) is EchoEdge
    finally:
        registry._LOADED["edge-method"].pop("echo-test")
