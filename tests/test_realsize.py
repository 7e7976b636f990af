"""The real-size path end to end (slow): full-size random-init BLIP (ViT-B/16, 384 px)
and a LLaVA-architecture model with a CLIP-L/14-336 tower, built and saved offline,
codebooks trained by the public training function on a handful of images, then
language-guided selection, the codebook, MDC and the exact NR link on 577 tokens.
``benchmarks/bench_realsize.py`` times the same path stage by stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def realsize(tmp_path_factory):
    from benchmarks.bench_realsize import prepare

    return prepare(tmp_path_factory.mktemp("fullsize"))


@pytest.mark.parametrize("family, task", [("blip", "caption"), ("llava", "vqa")])
def test_full_size_models_through_every_stage(realsize, family, task, tmp_path):
    import torch

    from benchmarks.bench_realsize import config
    from semcom.commands.runner import run
    from semcom.models import get_backend
    from semcom.stages.codebook import Codebook

    torch.set_num_threads(1)
    cfg = config(family, realsize, f"run.out_dir={tmp_path}", "data.num_images=2")
    be = get_backend(cfg.edge.model, "cpu")
    assert (be.image_size, be.num_patches + int(be.has_cls)) == (
        (384, 577) if family == "blip" else (336, 577)
    )
    assert be.token_dim == (768 if family == "blip" else 1024)
    cb = Codebook.load(realsize[family]["codebook"])
    assert cb.meta["model_id"] == be.model_id and cb.dim == be.token_dim
    # the directory is a save_pretrained checkpoint: processors and tokenizers included
    mdir = realsize[family]["model"]
    sub = mdir / "caption" if family == "blip" else mdir
    assert json.loads((sub / "preprocessor_config.json").read_text())
    res = run(cfg)
    assert res.ok, res.record.get("error")
    rec = res.record
    assert rec["num_samples"] == 2 and rec["samples_failed"] == 0
    rows = [json.loads(x) for x in (res.record_path.parent / "samples.jsonl").open()]
    for r in rows:
        assert r["tokens_sent"] == 64 and r["descriptions_sent"] == 2
        assert r["blocks"] >= 2 and r["outputs"][task] is not None
    assert rec["link"]["type"] == "nr" and rec["link"]["erasures"] == 0  # 10 dB: clean
    assert rec["rate"]["bpp_wire"] > 0
    assert np.isfinite(rec["metrics"][task][next(iter(rec["metrics"][task]))]["value"])
