"""The real-size path: per-image time of each stage at 577 tokens, and the reader's memory.

1. **Stages** on full-size random-init models (:mod:`semcom.models.fullsize`: BLIP
   ViT-B/16 at 384 px; the LLaVA-1.5 architecture with CLIP-L/14 at 336 px and a small
   language model), each with a 2^6 position-residual codebook trained by
   ``semcom.train.codebook.train_codebooks`` on 4 images: seconds per image of the
   vision encoder (+ the text guidance), language-guided selection (64 of 576 tokens),
   codebook + MDC + wire encoding (2 descriptions), the exact 5G NR link (QPSK, LDPC
   rate 1/2, 10 dB), the cloud's decode (dequantise, conceal) and the task (BLIP
   caption, LLaVA VQA answer). One torch thread.
2. **Memory**: ``semcom run`` (tiny BLIP, tokens, caption) over a folder of N copies of
   one 4000 x 3000 JPEG (hard links; default N = 1000, ``SEMCOM_BENCH_REALSIZE_N``), in
   a child process whose peak RSS is measured, beside the same run over 50 copies: the
   images are decoded one batch at a time, so the peak does not grow with N.

``python -m benchmarks.run realsize``. The models are built once into
``$TMPDIR/semcom-fullsize`` (about 2 GB, reused while the build is the same).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "semcom-fullsize"
N_IMAGES = 4  # images timed per model
BUDGET = 64


def prepare(root: Path = CACHE) -> dict:
    """Build both full-size models and their 2^6 codebooks + priors under ``root``."""
    from semcom.models.fullsize import build
    from semcom.train.codebook import train_codebooks

    out = {}
    for family in ("blip", "llava"):
        mdir = build(family, root / family)
        cdir = root / f"{family}-codebooks"
        stamp = cdir / "model_id.txt"
        from semcom.config.model import ModelRef
        from semcom.fingerprint import _model_id

        mid = _model_id(ModelRef(family, str(mdir)))
        if not (stamp.is_file() and stamp.read_text() == mid):
            train_codebooks(
                family, [6], model_path=str(mdir), images=4, iters=4, batch=4, out=cdir, seed=0
            )
            stamp.write_text(mid)
        out[family] = {
            "model": mdir,
            "codebook": cdir / f"{family}-k6-l2.npz",
            "prior": cdir / f"{family}-prior.npz",
        }
    return out


def config(family: str, paths: dict, *extra: str):
    """The run config of the real-size path for ``family`` (tokens, codebook, MDC, NR)."""
    from semcom.config import load_config

    p = paths[family]
    task = "caption" if family == "blip" else "vqa"
    return load_config(
        None,
        [
            "data.dataset=tinyworld",
            "data.num_images=4",
            f"edge.model.name={family}",
            f"edge.model.path={p['model']}",
            f"cloud.model.name={family}",
            f"cloud.model.path={p['model']}",
            f"cloud.tasks=[{task}]",
            "edge.method=tokens",
            "edge.select.scorer=text-sim",
            "edge.select.reducer=topk",
            f"edge.select.budget={BUDGET}",
            "edge.quant.type=codebook",
            "edge.quant.bits=6",
            f"edge.quant.codebook={p['codebook']}",
            f"edge.quant.prior={p['prior']}",
            "edge.mdc.descriptions=2",
            "channel.link=nr",
            "channel.modulation=qpsk",
            "channel.code_rate=0.5",
            "channel.snr_db=10",
            "cloud.max_new_tokens=8",
            "run.device=cpu",
            "run.progress=false",
            *extra,
        ],
    )


def stage_times(family: str, paths: dict, n: int = N_IMAGES) -> dict:
    """Seconds per image of each stage of the token path at full size."""
    import numpy as np

    from channel import build_link
    from cloud.pipeline import CloudItem
    from cloud.session import InProcessTransport
    from edge.pipeline import EdgePipeline
    from edge.selection.reducers import reduce_tokens
    from semcom.data import load_samples
    from semcom.models import get_backend
    from semcom.seeding import rng

    cfg = config(family, paths)
    task = cfg.cloud.tasks[0]
    backend = get_backend(cfg.edge.model, "cpu")
    edge = EdgePipeline(cfg, backend=backend)
    m = edge.method
    samples = load_samples(cfg.data, task)[:n]
    setup = edge.setup(samples)
    link = build_link(cfg.channel)
    session = InProcessTransport(cfg, backend).open([task], samples, setup=setup)
    clock = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - t0
        return out

    m.contexts(samples[:1], task)  # warm-up
    ctxs = timed("encoder_and_guidance", lambda: m.contexts(samples, task))
    results = []
    for s, ctx in zip(samples, ctxs):
        timed("selection", lambda: reduce_tokens(ctx, m.select, m.budget, importance=True))
        results.append(timed("_encode_context", lambda: m.encode_context(s, ctx)))
    clock["quantize_mdc_wire"] = clock.pop("_encode_context") - clock["selection"]
    items = []
    for s, er in zip(samples, results):
        tx = timed("nr_link", lambda: link.transmit(er.descriptions, rng(0, "link", s.sample_id)))
        items.append(CloudItem(s.sample_id, list(tx.received), s.hw, s.question))
    timed("cloud_decode", lambda: session.pipeline.decode(items))
    timed("_process", lambda: session.process(items, samples))
    clock["task_" + task] = clock.pop("_process") - clock["cloud_decode"]
    per = {k: v / len(samples) for k, v in clock.items()}
    per["total"] = sum(per.values())
    return {
        "family": family,
        "model_id": backend.model_id,
        "tokens": int(ctxs[0].tokens.shape[0]),
        "token_dim": int(backend.token_dim),
        "kept": BUDGET,
        "tokens_sent_mean": float(np.mean([r.info["tokens_sent"] for r in results])),
        "bits_mean": float(np.mean([sum(d.bits for d in r.descriptions) for r in results])),
        "images": len(samples),
        "seconds_per_image": per,
    }


# ----------------------------------------------------------------------------- memory

# the child's own peak: VmHWM (ru_maxrss would carry the parent's over fork + exec)
_CHILD = """
import json, sys, time
from benchmarks.bench_realsize import peak_rss_mb
from semcom.commands.runner import run
from semcom.config import load_config
cfg = load_config(None, sys.argv[2:])
t = time.perf_counter()
res = run(cfg, overwrite=True)
print(json.dumps({"ok": res.ok, "samples": res.record.get("num_samples"),
    "failed": res.samples_failed, "wall_s": time.perf_counter() - t,
    "peak_rss_mb": peak_rss_mb()}))
"""


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux ``VmHWM``; else ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def big_jpeg(path: Path, w: int = 4000, h: int = 3000) -> Path:
    """A 12-megapixel photo-like JPEG (gradients + noise, quality 90: about 4 MB)."""
    import numpy as np
    from PIL import Image

    if not path.is_file():
        r = np.random.default_rng(0)
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x / w * 255, y / h * 255, (x + y) % 256], -1)
        img = img + r.normal(0, 12, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def memory_run(n: int, root: Path) -> dict:
    folder = root / f"photos-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    src = big_jpeg(root / "big.jpg")
    for i in range(n):
        dst = folder / f"photo{i:05d}.jpg"
        if not dst.exists():
            os.link(src, dst)
    overrides = [
        "data.dataset=folder",
        f"data.path={folder}",
        "data.num_images=null",
        "edge.model.name=blip",
        "cloud.model.name=blip",
        "cloud.tasks=[caption]",
        "edge.method=tokens",
        "edge.select.scorer=cls-attn",
        "edge.quant.type=codebook",
        "channel.link=ideal",
        "run.batch_size=16",
        "run.progress=false",
        "run.device=cpu",
        f"run.out_dir={root / 'runs'}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "--", *overrides],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"images": n, "image": "4000 x 3000 JPEG", "batch_size": 16, **res}


def run() -> dict:
    import torch

    torch.set_num_threads(1)
    paths = prepare()
    stages = [stage_times(f, paths) for f in ("blip", "llava")]
    import gc

    import semcom.models

    semcom.models._BACKENDS.clear()  # the full-size models: about 4 GB
    gc.collect()
    n = int(os.environ.get("SEMCOM_BENCH_REALSIZE_N", "1000"))
    mem_root = CACHE / "memory"
    memory = [memory_run(50, mem_root), memory_run(n, mem_root)]
    lines = ["real size (random-init full-size models, 1 thread), seconds per image:"]
    for st in stages:
        per = st["seconds_per_image"]
        lines.append(
            f"  {st['family']} ({st['tokens']} tokens x {st['token_dim']}, {st['kept']} kept, "
            f"{st['bits_mean']:.0f} bits): " + ", ".join(f"{k} {v:.3f}" for k, v in per.items())
        )
    for mm in memory:
        lines.append(
            f"  reader: {mm['images']} x {mm['image']}, batch {mm['batch_size']}: peak RSS "
            f"{mm['peak_rss_mb']:.0f} MB, {mm['wall_s']:.0f} s, {mm['samples']} samples"
        )
    return {"stages": stages, "memory": memory, "summary": "\n".join(lines)}


if __name__ == "__main__":
    print(run()["summary"])
