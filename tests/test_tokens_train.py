"""``semcom train codebook``: training function and CLI surface (no model needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from semcom.commands.train.codebook import build_parser, main
from semcom.stages.codebook import Codebook, default_path
from semcom.train.codebook import train_codebook


@pytest.mark.parametrize("method", ["kmeans", "running-mean"])
def test_train_writes_a_usable_codebook(tmp_path, method):
    r = np.random.default_rng(0)
    tokens = (
        r.normal(0, 3, (16, 8))[r.integers(0, 16, 3000)] + r.normal(0, 0.2, (3000, 8))
    ).astype(np.float32)
    cb = train_codebook(
        tokens,
        6,
        metric="l2",
        method=method,
        weights=r.random(3000),
        iters=8,
        meta={"model_id": "m"},
    )
    assert cb.size == 64 and cb.dim == 8 and cb.counts.sum() == 3000
    assert cb.meta["method"] == method and cb.meta["model_id"] == "m"
    assert np.allclose(cb.mean, tokens.mean(0), atol=1e-5)
    assert np.all(cb.lo <= np.percentile(tokens, 1, axis=0))
    mse = ((tokens - cb.lookup(cb.search(tokens))) ** 2).mean()
    assert mse < 0.2 * tokens.var(0).mean()
    path = cb.save(tmp_path / "cb.npz")
    assert Codebook.load(path).hash == cb.hash


def test_cli_rejects_bad_sizes_and_help_does_not_import_torch():
    for bad in (["--bits", "21"], ["--bits", "1"], ["--stages", "0"], ["--train-budget", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
    assert build_parser().parse_args([]).bits == [6, 8, 10]
    code = (
        "import sys; from semcom.commands.cli import main; "
        "rc = main(['train', 'codebook', '--help']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "k-means" in out.stdout and "position-residual" in out.stdout


def test_default_codebook_path_naming():
    p = default_path("blip", 12, "l2")
    assert p.name == "blip-k12-l2.npz" and p.parent.name == "codebooks"


def test_residual_stages_train_on_the_residual_of_a_base(tmp_path):
    r = np.random.default_rng(0)
    base = r.normal(0, 4, (2000, 8)).astype(np.float32)
    x = base + r.normal(0, 1, (16, 8))[r.integers(0, 16, 2000)].astype(np.float32)
    cb = train_codebook(x, 4, stages=2, base=base, iters=10, meta={"residual": "position"})
    assert cb.stages == 2 and cb.residual == "position" and cb.stage_counts.shape == (2, 16)
    err = ((cb.reconstruct(cb.quantize(x, base), base) - x) ** 2).mean()
    plain = train_codebook(x, 4, iters=10)  # no base: the residual's clusters drown
    err_plain = ((plain.lookup(plain.search(x)) - x) ** 2).mean()
    assert err < 0.05 * err_plain


def test_a_model_of_your_own_needs_an_out_folder():
    from semcom.errors import ConfigError
    from semcom.train.codebook import train_codebooks

    with pytest.raises(ConfigError, match="--out"):
        train_codebooks("llava", [6], model_path="/some/real/model")


def test_the_default_codebook_of_each_model_is_shipped_and_position_residual():
    from semcom.config import load_config
    from semcom.stages.assets import load_token_assets

    for model, bits, stages in (("llava", 6, 1), ("blip", 8, 6)):
        cfg = load_config(None, [f"edge.model.name={model}", "edge.quant.type=codebook"])
        assert cfg.edge.quant.bits is None and cfg.edge.quant.bits_for(model) == bits
        a = load_token_assets(cfg)
        assert (a.codebook.bits, a.codebook.stages, a.codebook.residual) == (
            bits,
            stages,
            "position",
        )
        assert a.codebook.meta["prior"] == a.prior.hash[:16]
    scalar = load_config(None, ["edge.quant.type=scalar"]).edge.quant
    assert scalar.bits_for("llava") == 8
