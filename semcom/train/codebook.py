"""Position-aware codebooks and the token prior (``semcom train codebook``).

:func:`train_codebooks` runs the edge encoder of a model over the tiny world's *train*
split and writes, into one folder (default ``semcom/assets/codebooks/``):

- the **token prior** ``<model>-prior.npz`` (:mod:`semcom.stages.prior`): the mean token
  of every slot, and the context models of kept-position maps at several budgets, learned
  from the maps the default selection (language-guided top-k: the question for a model
  that answers questions, ``edge.prompt`` otherwise) makes on the training images;
- one **codebook** per size, ``<model>-k<bits>-<metric>.npz`` (the name
  ``edge.quant.codebook`` defaults to).

The default codebook is *position-residual* and *selection-weighted*: it quantises
``x - pos_mean[slot]`` of the tokens the selection keeps at ``train_budget`` (the tokens
that are actually sent: objects, not the background that makes up most of an image),
with ``stages`` residual stages of ``2**bits`` entries each, and stores each stage's usage
counts on those tokens as the entropy model of its indices. ``residual: none`` and
``weighting: all`` give the plain k-means codebook on every token (``-plain`` in the
name); ``method: running-mean`` the first seed paper's importance-weighted running mean.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PRIOR_BUDGETS = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96)


def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """``bool [N, P]``: the ``k`` highest scores of each row (ties by position), as the
    edge's ``topk`` reducer keeps them."""
    n, P = scores.shape
    k = min(k, P)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros((n, P), bool)
    np.put_along_axis(out, order, True, axis=1)
    return out


def collect(backend, samples, *, guidance, batch: int = 64, importance: str = "uniform"):
    """Tokens ``float32 [N, T, D]`` (CLS first if the model has one), text similarity of
    each patch to its guidance text ``float32 [N, P]``, and per-token importance
    ``float32 [N, T]`` (``cls-attn``, ``l2-norm`` or ``uniform``). Images are decoded a
    batch at a time and dropped after it; unreadable ones are skipped with a warning."""
    import torch

    from semcom.data.images import read_batch, release

    toks, sims, imps = [], [], []
    layer = (-1,) if importance == "cls-attn" and backend.has_cls else ()
    for i in range(0, len(samples), batch):
        chunk, failed = read_batch(samples[i : i + batch])
        for _, err in failed:
            log.warning("training data: skipping %s", err)
        if not chunk:
            continue
        with torch.no_grad():
            out = backend.vision_tokens(
                backend.preprocess([s.image for s in chunk]), attn_layers=layer
            )
            t = out.tokens
            prefix = t.shape[1] - backend.num_patches
            tf = backend.text_features([guidance(s) for s in chunk])
            pe = backend.patch_embeddings(t)[:, prefix:]
            sim = torch.einsum("bpe,be->bp", pe.float(), tf.float().to(pe.device))
        tn = t.float().cpu().numpy()
        if layer:
            a = out.attentions[-1].float().cpu().numpy()[:, :, 0, :].sum(1)
            a[:, 0] = a[:, 1:].max(1)  # CLS: as important as the most attended patch
        elif importance == "l2-norm":
            a = np.linalg.norm(tn, axis=-1)
        else:
            a = np.ones(tn.shape[:2])
        toks.append(tn.astype(np.float32))
        sims.append(sim.cpu().numpy().astype(np.float32))
        imps.append(a.astype(np.float32))
        release(chunk)
    return np.concatenate(toks), np.concatenate(sims), np.concatenate(imps)


def fit_prior(tokens, sims, *, grid, has_cls, budgets=PRIOR_BUDGETS, meta=None):
    """The :class:`~semcom.stages.prior.TokenPrior` of training tokens and the kept maps
    of top-k selections by ``sims`` at each budget."""
    from semcom.stages.prior import TokenPrior

    P = sims.shape[1]
    selections = {int(k): topk_mask(sims, int(k)) for k in budgets if 0 < k < P}
    return TokenPrior.fit(tokens, selections, grid=grid, has_cls=has_cls, meta=meta)


def train_codebook(
    tokens: np.ndarray,
    bits: int,
    *,
    stages: int = 1,
    metric: str = "l2",
    method: str = "kmeans",
    weights: np.ndarray | None = None,
    iters: int = 20,
    seed: int = 0,
    max_tokens: int = 150_000,
    base: np.ndarray | None = None,
    meta: dict | None = None,
):
    """One :class:`~semcom.stages.codebook.Codebook` of ``stages`` x ``2**bits`` entries
    on ``tokens float32 [N, D]`` (minus ``base [N, D]`` for a position-residual one)."""
    from semcom.stages.codebook import Codebook, kmeans, nearest, running_mean

    k = 2**bits
    rs = np.random.default_rng(seed)
    x = np.asarray(tokens, np.float32) - (0 if base is None else base)
    if stages > 1 and (metric != "l2" or method != "kmeans"):
        raise ValueError("residual stages need l2 k-means")
    books, counts = [], []
    r = x
    for s in range(stages):
        if method == "kmeans":
            xs = r if len(r) <= max_tokens else r[np.sort(rs.choice(len(r), max_tokens, False))]
            cw, _ = kmeans(
                xs, k, metric=metric, iters=iters, seed=seed + s, log=lambda m: log.info(m)
            )
        else:
            order = rs.permutation(len(r))
            w = weights[order] if weights is not None else np.ones(len(r))
            cw, _ = running_mean(r[order], w, k, metric=metric)
        cw16 = cw.astype(np.float16).astype(np.float32)
        j = nearest(r, cw16, metric)
        books.append(cw16)
        counts.append(np.bincount(j, minlength=k))
        r = r - cw16[j]
    lo, hi = np.percentile(tokens, [0.1, 99.9], axis=0)
    m = {
        "metric": metric,
        "method": method,
        "size": k,
        "bits": bits,
        "stages": stages,
        "dim": int(x.shape[1]),
        "train_tokens": int(len(x)),
        "seed": seed,
        **(meta or {}),
    }
    return Codebook(np.stack(books), np.stack(counts), tokens.mean(0), lo, hi, m)


def codebook_name(
    model: str, bits: int, metric: str = "l2", method: str = "kmeans", residual: str = "position"
) -> str:
    """``<model>-k<bits>-<metric>[-plain][-<method>]``: the file stem of a codebook."""
    name = f"{model}-k{bits}-{metric}"
    if residual == "none":
        name += "-plain"
    return name if method == "kmeans" else f"{name}-{method}"


def _guidance(task: str, prompt: str):
    return lambda s: s.question if task == "vqa" and s.question else prompt


def train_codebooks(
    model: str,
    bits: list[int],
    *,
    model_path: str = "",
    stages: int = 1,
    metric: str = "l2",
    method: str = "kmeans",
    residual: str = "position",
    weighting: str = "selected",
    train_budget: int = 16,
    importance: str = "cls-attn",
    images: int = 3000,
    max_tokens: int = 150_000,
    iters: int = 20,
    seed: int = 0,
    batch: int = 64,
    out: str | Path = "",
    device: str = "cpu",
    prompt: str = "a picture of",
    data=None,
) -> list[Path]:
    """The token prior and codebooks of ``2**b`` entries for each ``b`` in ``bits`` on
    ``images`` tiny-world train scenes through ``model`` (``model_path``: its directory,
    empty: the tiny one), saved into ``out`` (empty: ``semcom/assets/codebooks/``; a
    model of your own needs an ``out``); the paths written, the prior's first.

    ``data``: a :class:`~semcom.config.data.DataConfig` (any dataset; default the tiny
    world's train split, ``images`` of it). ``weighting``: ``selected`` trains on the
    tokens the selection keeps at
    ``train_budget`` (and the CLS token of a model that reads it), ``all`` on every
    token; ``importance`` weighs the tokens of the ``running-mean`` method.
    """
    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.data.training import training_samples
    from semcom.errors import ConfigError, DataError
    from semcom.models import load_backend
    from semcom.seeding import seed_everything
    from semcom.stages.codebook import ASSETS
    from semcom.train.assets import trained_on

    if model_path and not out:
        raise ConfigError(
            "out",
            "codebooks for a model of your own go into a folder of yours (--out DIR): the "
            "shipped files in semcom/assets/codebooks are the tiny models'",
        )
    if residual not in ("position", "none") or weighting not in ("selected", "all"):
        raise ConfigError("residual", f"unknown residual {residual!r} or weighting {weighting!r}")
    seed_everything(seed)
    backend = load_backend(ModelRef(model, model_path), device=device)
    t0 = time.perf_counter()
    task = "vqa" if "vqa" in backend.tasks else "caption"
    data = data or DataConfig(split="train", num_images=images)
    try:
        samples = training_samples(data, task)
    except DataError:
        if task != "vqa":
            raise
        task = "caption"  # a dataset without questions: the prompt guides the selection
        samples = training_samples(data, task)
    tokens, sims, imp = collect(
        backend,
        samples,
        guidance=_guidance(task, prompt),
        batch=batch,
        importance=importance if method == "running-mean" else "uniform",
    )
    has_cls = tokens.shape[1] == backend.num_patches + 1
    g = backend.grid
    grid = (g, g) if isinstance(g, int) else tuple(g)
    print(
        f"{len(samples)} train images ({backend.model_id}): {tokens.shape[0]} x "
        f"{tokens.shape[1]} tokens, {time.perf_counter() - t0:.1f}s"
    )
    out = Path(out) if out else ASSETS
    data_meta = {
        "model_id": backend.model_id,
        "model": model,
        "train_images": int(tokens.shape[0]),
        "trained_on": trained_on(backend, data),
        "selection": {"scorer": "text-sim", "reducer": "topk", "guidance": task},
    }
    prior = fit_prior(tokens, sims, grid=grid, has_cls=has_cls, meta=data_meta)
    prior_file = prior.save(out / f"{model}-prior.npz")
    print(f"{prior_file}: prior {prior.hash[:16]}, budgets {prior.budgets.tolist()}")
    # the training set: kept patches at the training budget (+ CLS when it is sent)
    P = backend.num_patches
    off = int(has_cls)
    patches = tokens[:, off:].reshape(-1, tokens.shape[2])
    slot = np.tile(np.arange(P), len(tokens))
    keep = topk_mask(sims, train_budget).reshape(-1) if weighting == "selected" else None
    x = patches if keep is None else patches[keep]
    base = prior.base(slot if keep is None else slot[keep])
    w = imp[:, off:].reshape(-1) if keep is None else imp[:, off:].reshape(-1)[keep]
    sends_cls = (
        has_cls
        and getattr(backend, "uses_cls", None) is not False
        and (getattr(backend, "strategy", "full") != "default")
    )
    if sends_cls:
        x = np.concatenate([x, tokens[:, 0]])
        base = np.concatenate([base, np.repeat(prior.cls_mean()[None], len(tokens), 0)])
        w = np.concatenate([w, imp[:, 0]])
    paths = [prior_file]
    for b in bits:
        t1 = time.perf_counter()
        cb = train_codebook(
            x,
            b,
            stages=stages,
            metric=metric,
            method=method,
            weights=w,
            iters=iters,
            seed=seed,
            max_tokens=max_tokens,
            base=base if residual == "position" else None,
            meta={
                **data_meta,
                "residual": residual,
                "prior": prior.hash[:16] if residual == "position" else None,
                "weighting": weighting,
                "train_budget": train_budget if weighting == "selected" else None,
            },
        )
        path = cb.save(out / f"{codebook_name(model, b, metric, method, residual)}.npz")
        n = min(20000, len(x))
        b0 = base[:n] if residual == "position" else None
        mse = float(((x[:n] - cb.reconstruct(cb.quantize(x[:n], b0), b0)) ** 2).mean())
        print(
            f"{path}: {cb.stages} x {cb.size} x {cb.dim}, token MSE {mse:.4g} (var "
            f"{float(x.var(0).mean()):.4g}) on {len(x)} training tokens, hash "
            f"{cb.hash[:12]}, {time.perf_counter() - t1:.1f}s"
        )
        paths.append(path)
    return paths
