"""``semcom train codebook``: training function and CLI surface (no model needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from semcom.stages.codebook import Codebook, default_path
from semcom.train.codebook import build_parser, main, train


@pytest.mark.parametrize("method", ["kmeans", "running-mean"])
def test_train_writes_a_usable_codebook(tmp_path, method):
    r = np.random.default_rng(0)
    tokens = (r.normal(0, 3, (16, 8))[r.integers(0, 16, 3000)]
              + r.normal(0, 0.2, (3000, 8))).astype(np.float32)
    cb = train(tokens, 6, metric="l2", method=method, weights=r.random(3000), iters=8,
               meta={"model_id": "m"})
    assert cb.size == 64 and cb.dim == 8 and cb.counts.sum() == 3000
    assert cb.meta["method"] == method and cb.meta["model_id"] == "m"
    assert np.allclose(cb.mean, tokens.mean(0), atol=1e-5)
    assert np.all(cb.lo <= np.percentile(tokens, 1, axis=0))
    mse = ((tokens - cb.lookup(cb.search(tokens))) ** 2).mean()
    assert mse < 0.2 * tokens.var(0).mean()
    path = cb.save(tmp_path / "cb.npz")
    assert Codebook.load(path).hash == cb.hash


def test_cli_rejects_bad_sizes_and_help_does_not_import_torch():
    with pytest.raises(SystemExit):
        main(["--bits", "5"])
    assert build_parser().parse_args([]).bits == [6, 8, 10, 12]
    code = ("import sys; from semcom.cli import main; "
            "rc = main(['train', 'codebook', '--help']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "k-means" in out.stdout


def test_default_codebook_path_naming():
    p = default_path("blip", 12, "l2")
    assert p.name == "blip-k12-l2.npz" and p.parent.name == "codebooks"
