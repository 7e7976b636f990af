"""``semcom train tinyworld``: train the tiny BLIP or LLaVA on the tiny world, save
them (safetensors, fp16) where ``load_backend`` finds them, and evaluate them.

- ``--model blip``: ``BlipForConditionalGeneration`` + ``BlipForImageTextRetrieval``
  sharing ONE vision encoder (4 layers, 96 wide, patch 8: 1 + 144 tokens). Losses:
  captioning (LM), ITC, ITM with in-batch hard negatives (as BLIP), a phrase-to-patch
  alignment loss that makes ``patch_embeddings`` vs ``text_features`` point at objects,
  and the per-patch attribute loss (:func:`attribute_loss`).
- ``--model llava``: ``LlavaForConditionalGeneration`` (CLIP-style vision tower, MLP
  projector, 3-layer Llama) plus a ``CLIPModel`` whose vision tower IS LLaVA's (text
  tower for guidance). Losses: VQA and captioning (LM), CLIP contrastive, the
  question-to-patch alignment loss and the per-patch attribute loss on the features
  LLaVA projects.

The vision encoders run on a token subset (every object patch + 12 random background
patches, patch dropout as FLIP) on most steps; every ``full_every``-th step and the last
``full_fraction`` of training they see all 1 + 144 tokens, so there is no abrupt switch
(the first runs, full tokens only at the end, had LLaVA's losses jump 0.4 -> 1.8 there).
Position embeddings are fixed 2-D sin-cos (:func:`semcom.models.tiny.sincos_positions`).

The decoders see object-preserving token subsets part of the time (all object patches,
a random fraction of background patches, BLIP's CLS sometimes dropped), so they accept
the variable token sets the cloud receives; objects are never dropped in training, so
the vision encoder has no reason to copy object content into background tokens.

The evaluation (``--eval-only`` evaluates a saved model) loads the saved directory
through :func:`semcom.models.load_backend` (the same path as real weights) and runs
``cloud.tasks`` on 1,000 eval scenes with full tokens, with zeroed tokens (chance
check) and with oracle / random token subsets (does choosing tokens matter?).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from semcom.commands.common import parser as make_parser

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {
    "blip": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "train_images": 20000},
    "llava": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "train_images": 20000},
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("train tinyworld", "train the tiny BLIP or LLaVA on the tiny world")
    p.add_argument("--model", required=True, choices=("blip", "llava"))
    p.add_argument("--out", metavar="DIR", help="output directory (default: the embedded "
                   "semcom/models/tiny/<model>/)")
    p.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="init, batch order and augmentation seed")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--train-images", type=int, help="tiny-world train scenes (default 20000)")
    p.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the auxiliary per-patch attribute loss (default 1; 0 = off)")
    p.add_argument("--prompt-template", metavar="T",
                   help="LLaVA: the conversation template, with <image> and {prompt} "
                   "(default the LLaVA-1.5 one, image first); saved in the model's "
                   "semcom.json, which the backend reads")
    p.add_argument("--lm-init-std", type=float, metavar="S",
                   help="LLaVA: redraw the language model's linear layers with std S at "
                   "init (default 0.088)")
    p.add_argument("--lookup-weight", type=float, metavar="W",
                   help="LLaVA: weight of the training-only lookup loss (attention of "
                   "the answer position to the question's words, then to its object; "
                   "default 1, 0 = off)")
    p.add_argument("--rope-theta", type=float, metavar="B",
                   help="LLaVA: the language model's RoPE base (default 1e6)")
    p.add_argument("--eval-images", type=int, default=1000, help="eval scenes (default 1000)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the model in --out")
    p.add_argument("--no-eval", action="store_true", help="train and save only")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine two threads "
                   "were up to 10x slower than one, from OpenMP contention)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from semcom.errors import SemcomError

    args = build_parser().parse_args(argv)
    threads = args.threads
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    d = DEFAULTS[args.model]
    steps = args.steps or d["steps"]
    bs = args.batch_size or d["batch_size"]
    lr = args.lr or d["lr"]
    n_train = args.train_images or d["train_images"]
    out = Path(args.out) if args.out else REPO / "semcom" / "models" / "tiny" / args.model
    command = "semcom train tinyworld " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.eval_only:
        _check_writable(out)
    record = None
    if not args.eval_only:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        fn = train_blip if args.model == "blip" else train_llava
        kw = {"template": args.prompt_template} if args.prompt_template else {}
        if kw:
            _check_template(args.model, args.prompt_template)
        for flag, key in (("--lm-init-std", "lm_init_std"), ("--lookup-weight", "lookup_weight"),
                          ("--rope-theta", "rope_theta")):
            v = getattr(args, key)
            if v is None:
                continue
            if args.model != "llava":
                raise SemcomError(f"{flag} applies to --model llava only")
            zero_ok = key == "lookup_weight"          # 0 turns the lookup loss off
            if not (v > 0 or (zero_ok and v == 0)):
                raise SemcomError(f"{flag} must be {'>=' if zero_ok else '>'} 0, got {v}")
            kw[key] = v
        info = fn(out, steps=steps, batch_size=bs, lr=lr, n_train=n_train, seed=args.seed,
                  progress=not args.quiet, aux_weight=args.aux_weight, **kw)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        record = {"command": command, "model": args.model, "seed": args.seed, "steps": steps,
                  "batch_size": bs, "lr": lr, "train_images": n_train, "threads": threads,
                  "aux_weight": args.aux_weight,
                  "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                  "train_s": round(info.pop("train_s"), 1), **info,
                  "versions": _versions()}
        print(f"trained {args.model} in {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU "
              f"({threads} thread(s)) -> {out}", file=sys.stderr)
    if not args.no_eval:
        t1 = time.perf_counter()
        metrics = evaluate(out, args.model, args.eval_images, progress=not args.quiet)
        metrics["eval_s"] = round(time.perf_counter() - t1, 1)
        print_metrics(args.model, metrics)
        if record is not None:
            record["eval"] = metrics
        if args.json:
            Path(args.json).write_text(json.dumps({"command": command, "eval": metrics},
                                                  indent=2) + "\n")
    if record is not None:
        from semcom.models.base import TRAIN_METRICS, model_id

        record["model_id"] = model_id(args.model, [out])
        (out / TRAIN_METRICS).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _check_template(model: str, template: str) -> None:
    from semcom.errors import SemcomError

    if model != "llava":
        raise SemcomError("--prompt-template is for --model llava")
    if "<image>" not in template or "{prompt}" not in template:
        raise SemcomError(f"--prompt-template must contain <image> and {{prompt}}, got "
                          f"{template!r}")


def _check_writable(out: Path) -> None:
    """Fail before training (not after it) when ``out`` cannot be written."""
    from semcom.errors import SemcomError

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SemcomError(f"cannot write the trained model to {out}: {exc}; "
                          "choose another directory with --out") from None


def _versions() -> dict:
    import platform

    import tokenizers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


# ------------------------------------------------------------------------------- data

class TrainSet:
    """Rendered train scenes (uint8), their patch labels and captions."""

    def __init__(self, n: int, world_seed: int = 0, patch: int = 8):
        import numpy as np
        import torch

        from semcom.world import patch_labels, scenes

        self.scenes = scenes(world_seed, "train", n)
        imgs, p1, p8 = [], [], []
        for s in self.scenes:
            img, lab = s.render()
            imgs.append(img)
            p1.append(patch_labels(lab, patch, 1))
            p8.append(patch_labels(lab, patch, 8))
        self.images = torch.from_numpy(np.stack(imgs))
        self.plabels = torch.from_numpy(np.stack(p1))    # touching patches (token dropout)
        self.plabels8 = torch.from_numpy(np.stack(p8))   # >= 8 px (alignment targets)
        self.captions = [s.caption() for s in self.scenes]
        # per scene and object slot (-1: no object): attribute class ids, for the
        # auxiliary attribute loss (see :func:`attribute_loss`)
        from semcom.world import vocab as V

        attr = np.full((n, V.MAX_OBJECTS, 3), -1, np.int64)
        shapes, colours, sizes = list(V.SHAPES), list(V.COLOURS), list(V.SIZES)
        for i, s in enumerate(self.scenes):
            for k, o in enumerate(s.objects):
                attr[i, k] = (shapes.index(o.shape), colours.index(o.colour), sizes.index(o.size))
        self.attributes = torch.from_numpy(attr)                # [N, MAX_OBJECTS, 3]

    def __len__(self):
        return len(self.scenes)


def normalize_images(images_u8):
    """uint8 [B, H, W, 3] -> CLIP-normalised float [B, 3, H, W] (= the saved processors
    for 96 x 96 inputs, checked in the tests)."""
    import torch

    x = images_u8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def keep_masks(plabels, g, p_full: float, p_nocls: float):
    """[B, 1+P] bool: all tokens (p_full), else CLS (unless dropped, p_nocls) + every
    object patch + a random fraction u ~ U(0, 1) of the background patches."""
    import torch

    b, p = plabels.shape
    r = torch.rand(b, generator=g)
    u = torch.rand(b, 1, generator=g)
    patches = (plabels >= 0) | (torch.rand(b, p, generator=g) < u)
    full = r < p_full
    patches[full] = True
    cls = ~((r >= p_full) & (r < p_full + p_nocls))
    return torch.cat([cls[:, None], patches], 1)


def batches(n: int, bs: int, steps: int, seed: int):
    """Indices of each step: seeded permutations, epoch after epoch."""
    import numpy as np

    from semcom.seeding import rng

    out, epoch = [], 0
    while len(out) < steps:
        perm = rng(seed, "tinyworld-batches", epoch).permutation(n)
        out += [perm[i:i + bs] for i in range(0, n - bs + 1, bs)]
        epoch += 1
    return [np.sort(x) for x in out[:steps]]


def schedule(step: int, steps: int, warmup: int = 100) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def make_optimizer(params, lr):
    import torch

    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.02},
                              {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-6)


def unique_params(*modules):
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def dense_loss(patch_emb, text_emb, targets, tau: float = 0.07):
    """Text -> patches alignment: softmax over the patches of each image should put its
    mass on the target patches (uniform target). Rows without a target are skipped."""
    import torch

    logits = torch.einsum("bpe,be->bp", patch_emb, text_emb) / tau
    t = targets.float()
    n = t.sum(1, keepdim=True)
    ok = n.squeeze(1) > 0
    if not ok.any():
        return logits.sum() * 0
    logp = torch.log_softmax(logits[ok], 1)
    return -((t[ok] / n[ok]) * logp).sum(1).mean()


ATTRIBUTE_CLASSES = (1 + 3, 5, 2)   # shape (+ background), colour, size


def attribute_head(dim: int, seed: int):
    """The training-only linear head of :func:`attribute_loss` (not saved with the model)."""
    import torch

    from semcom.world import vocab as V

    assert ATTRIBUTE_CLASSES == (1 + len(V.SHAPES), len(V.COLOURS), len(V.SIZES))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Linear(dim, sum(ATTRIBUTE_CLASSES))


def attribute_loss(head, patch_tokens, lab8, lab1, attributes):
    """Auxiliary per-patch attribute classification (the training-only ``head``).

    Each patch token that shows >= 8 pixels of an object must tell that object's shape,
    colour and size; each patch without any object pixel must say "background" in the
    shape head. Why: with 12-20 px objects on 8-px patches, the first tiny models learned
    colour, position and count but not shape (shape questions at chance, captions
    swapping square/triangle/circle), because the caption and answer losses give the
    shape only a weak, late signal. This loss puts the shape into every object patch.

    ``patch_tokens`` [B, K, D]; ``lab8`` / ``lab1`` [B, K] object slot of each patch
    (>= 8 / >= 1 pixels, -1 none); ``attributes`` [B, MAX_OBJECTS, 3] class ids.
    """
    import torch
    from torch.nn import functional as F

    logits = head(patch_tokens)                                         # [B, K, 11]
    ls, lc, lz = logits.split(ATTRIBUTE_CLASSES, -1)
    obj = lab8 >= 0
    bg = lab1 < 0
    slot = lab8.clamp(min=0)
    attr = torch.gather(attributes, 1, slot.unsqueeze(-1).expand(-1, -1, 3))  # [B, K, 3]
    shape_t = torch.where(obj, attr[..., 0] + 1, torch.zeros_like(slot))
    use = obj | bg
    loss = F.cross_entropy(ls[use], shape_t[use])
    if obj.any():
        loss = loss + F.cross_entropy(lc[obj], attr[..., 1][obj]) + F.cross_entropy(lz[obj], attr[..., 2][obj])
    return loss


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, mininterval=2.0)


# ------------------------------------------------------------------------ encoders

def subset_index(plabels, g, extra_bg: int = 12):
    """[B, 1+K] token indices (0 = CLS) of a training subset: every object patch plus
    random background patches, K the same for the whole batch, raster order.

    Most of training runs the vision encoder on these subsets only (patch dropout, as
    FLIP): background is most of the image, so this is ~3x cheaper. The last part of
    training sees all 1 + 144 tokens, as at inference."""
    import torch

    b, p = plabels.shape
    obj = plabels >= 0
    k = min(p, int(obj.sum(1).max()) + extra_bg)
    score = torch.rand(b, p, generator=g) + 2.0 * obj.float()
    top = score.topk(k, dim=1).indices.sort(1).values
    return torch.cat([torch.zeros(b, 1, dtype=torch.long), top + 1], 1)


def gather_tokens(x, index):
    import torch

    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def token_labels(plabels, index):
    """Object label of each token position (-1 for CLS and background)."""
    import torch

    lab = torch.cat([torch.full((plabels.shape[0], 1), -1, dtype=plabels.dtype), plabels], 1)
    return lab if index is None else torch.gather(lab, 1, index)


def blip_encode(vision, x, index=None):
    """BlipVisionModel's forward (post-LayerNorm last hidden state), optionally on a
    token subset."""
    h = vision.embeddings(x)
    if index is not None:
        h = gather_tokens(h, index)
    for layer in vision.encoder.layers:
        h = layer(h)
    return vision.post_layernorm(h)


def clip_encode(vm, x, index=None):
    """CLIPVisionModel's hidden states (embeddings, after each layer), optionally on a subset."""
    h = vm.pre_layrnorm(vm.embeddings(x))
    if index is not None:
        h = gather_tokens(h, index)
    hs = [h]
    for layer in vm.encoder.layers:
        h = layer(h, None)
        hs.append(h)
    return hs


# ------------------------------------------------------------------------------- BLIP

def train_blip(out: Path, *, steps, batch_size, lr, n_train, seed, progress=True,
               full_fraction: float = 0.1, full_every: int = 5, aux_weight: float = 1.0) -> dict:
    import numpy as np
    import torch
    from torch.nn import functional as F

    from semcom.models.tiny import TinySizes, build_blip, save_blip, sizes_dict
    from semcom.seeding import derive_seed, rng, seed_everything

    seed_everything(seed)
    t_data = time.perf_counter()
    data = TrainSet(n_train)
    sizes = TinySizes()
    cap, ret, tok = build_blip(sizes, seed=derive_seed(seed, "blip-init") % 2**31)
    cap.train()
    ret.train()
    enc = tok(data.captions, padding="max_length", max_length=32, truncation=True,
              return_tensors="pt")
    ids_all, att_all = enc["input_ids"], enc["attention_mask"]
    bos = cap.config.text_config.bos_token_id
    phrases = [[o.phrase() for o in s.objects] for s in data.scenes]
    generic = ["a picture of", "an image of"]
    temp = torch.nn.Parameter(torch.tensor(0.07))
    head = attribute_head(sizes.vision_dim, derive_seed(seed, "blip-attr") % 2**31)
    params = unique_params(cap, ret) + [temp]
    opt = make_optimizer(params + list(head.parameters()), lr)
    g = torch.Generator().manual_seed(derive_seed(seed, "blip-aug") % 2**63)
    plan = batches(len(data), batch_size, steps, seed)
    vision = cap.vision_model
    first_full = int(round(steps * (1 - full_fraction)))
    curve, t0 = [], time.perf_counter()
    data_s = t0 - t_data
    bar = _progress(steps, "train blip", progress)
    for step, idx in enumerate(plan):
        idx_t = torch.from_numpy(idx)
        b = len(idx)
        for group in opt.param_groups:
            group["lr"] = lr * schedule(step, steps)
        x = normalize_images(data.images[idx_t])
        plab = data.plabels[idx_t]
        if step < first_full and step % full_every != full_every - 1:
            # encoder on objects + some background (patch dropout)
            index = subset_index(plab, g)
            keep = torch.ones(index.shape, dtype=torch.bool)
            keep[:, 0] = torch.rand(b, generator=g) >= 0.3      # CLS dropped for the decoders
        else:                      # all tokens, object-preserving output subsets
            index = None
            keep = keep_masks(plab, g, 0.4, 0.3)
        tokens = blip_encode(vision, x, index)                      # [B, 1+K, D]
        lab8 = token_labels(data.plabels8[idx_t], index)[:, 1:]
        lab1 = token_labels(plab, index)[:, 1:]
        l_attr = attribute_loss(head, tokens[:, 1:], lab8, lab1, data.attributes[idx_t])
        ids, att = ids_all[idx_t], att_all[idx_t]
        # captioning (decoder starts with BOS = [DEC], as generate does)
        dec_ids = ids.clone()
        dec_ids[:, 0] = bos
        labels = dec_ids.masked_fill(att == 0, -100)
        l_lm = cap.text_decoder(input_ids=dec_ids, attention_mask=att,
                                encoder_hidden_states=tokens, encoder_attention_mask=keep.long(),
                                labels=labels).loss
        # ITC (CLS)
        h_txt = ret.text_encoder(input_ids=ids, attention_mask=att).last_hidden_state[:, 0]
        tf = F.normalize(ret.text_proj(h_txt), dim=-1)
        vf = F.normalize(ret.vision_proj(tokens[:, 0]), dim=-1)
        sim = vf @ tf.T / temp.clamp(0.01, 0.5)
        ar = torch.arange(b)
        l_itc = (F.cross_entropy(sim, ar) + F.cross_entropy(sim.T, ar)) / 2
        # ITM: positives + one hard negative per pair (text for the first half of the
        # batch, image for the second), drawn from the ITC similarities
        with torch.no_grad():
            same = torch.tensor([[data.captions[i] == data.captions[j] for j in idx] for i in idx])
            w = (torch.softmax(sim.float(), 1) + 1e-9).masked_fill(same, 0)
            neg_t = torch.multinomial(w, 1, generator=g).squeeze(1)
            neg_i = torch.multinomial(w.T.contiguous(), 1, generator=g).squeeze(1)
        half = b // 2
        img_idx = torch.cat([ar, ar[:half], neg_i[half:]])
        txt_idx = torch.cat([ar, neg_t[:half], ar[half:]])
        h_itm = ret.text_encoder(input_ids=ids[txt_idx], attention_mask=att[txt_idx],
                                 encoder_hidden_states=tokens[img_idx],
                                 encoder_attention_mask=keep[img_idx].long()).last_hidden_state[:, 0]
        itm_labels = torch.cat([torch.ones(b), torch.zeros(b)]).long()
        l_itm = F.cross_entropy(ret.itm_head(h_itm), itm_labels)
        # phrase -> patch alignment (text guidance points at objects)
        r = rng(seed, "blip-dense", step)
        texts, targets = [], []
        for j, i in enumerate(idx):
            if r.random() < 0.7:
                k = int(r.integers(len(phrases[i])))
                texts.append(phrases[i][k])
                targets.append(lab8[j] == k)
            else:
                texts.append(generic[int(r.integers(2))])
                targets.append(lab8[j] >= 0)
        denc = tok(texts, padding=True, return_tensors="pt")
        h_d = ret.text_encoder(input_ids=denc["input_ids"],
                               attention_mask=denc["attention_mask"]).last_hidden_state[:, 0]
        l_dense = dense_loss(F.normalize(ret.vision_proj(tokens[:, 1:]), dim=-1),
                             F.normalize(ret.text_proj(h_d), dim=-1), torch.stack(targets))
        loss = l_lm + l_itc + l_itm + 0.5 * l_dense + aux_weight * l_attr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        parts = {"lm": l_lm.item(), "itc": l_itc.item(), "itm": l_itm.item(),
                 "dense": l_dense.item(), "attr": l_attr.item()}
        if step % 50 == 0 or step == steps - 1:
            curve.append({"step": step, "s": round(time.perf_counter() - t0, 1),
                          **{k: round(v, 4) for k, v in parts.items()}})
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
        bar.update(1)
    bar.close()
    train_s = time.perf_counter() - t0
    cap.eval()
    ret.eval()
    save_blip(out, cap, ret, tok, manifest={"trained_by": "semcom train tinyworld --model blip"})
    return {"train_s": train_s + data_s, "data_s": round(data_s, 1), "sizes": sizes_dict(sizes),
            "params": sum(p.numel() for p in params) - 1, "full_token_steps":
            steps - first_full + first_full // full_every,
            "position_embedding": "2-D sin-cos, fixed",
            "loss_curve": curve, "final": curve[-1] if curve else {},
            "np_version": np.__version__}


# ------------------------------------------------------------------------------ LLaVA

def lookup_loss(attentions, ids, prompt_len, attr_ids, img_id, patch_labels, relevant):
    """Training-only supervision of the two attention steps of an attribute lookup, at the
    last prompt position (the one that predicts the answer's first token), head 0:

    - layer 0 must put its mass on the question's attribute words ("red", "circle"...),
      so that the position carries what to look for;
    - layer 1 must put its mass on the image tokens of the question's object(s).

    Why: "is there a red circle?" depends only on the interaction of question and image.
    Without help the 3-layer language model never found it (its loss stayed at ln 2 / 2
    for 1,000 steps of "is there" questions alone; experiments/llava_lm/README.md).

    ``attentions``: the language model's per-layer [B, H, T, T]; ``ids`` [B, T];
    ``prompt_len``: per row, the number of prompt tokens; ``attr_ids`` [A] token ids of
    attribute words; ``patch_labels``: per row, the object slot of each inserted image
    token (-1 background); ``relevant``: per row, the question's object slots, or None
    (a caption prompt). Rows with nothing to look at are skipped; 0 if none is left.
    """
    import torch

    terms = []
    for j, rel in enumerate(relevant):
        if rel is None:
            continue
        last = prompt_len[j] - 1
        words = torch.isin(ids[j, :prompt_len[j]], attr_ids).nonzero().squeeze(-1)
        if len(words):
            terms.append(-torch.log(attentions[0][j, 0, last, words].sum() + 1e-6))
        if rel:
            img = (ids[j] == img_id).nonzero().squeeze(-1)
            hit = img[torch.isin(patch_labels[j], torch.tensor(rel, dtype=patch_labels[j].dtype))]
            if len(hit):
                terms.append(-torch.log(attentions[1][j, 0, last, hit].sum() + 1e-6))
    if not terms:
        return attentions[0].sum() * 0
    return torch.stack(terms).mean()


def attribute_token_ids(tok):
    """Token ids of the world's colour, shape and size words in the LLaVA tokenizer."""
    import torch

    from semcom.world import vocab as V

    ids = {i for w in (*V.COLOURS, *V.SHAPES, *V.SIZES)
           for i in tok(w, add_special_tokens=False)["input_ids"] if i != tok.unk_token_id}
    return torch.tensor(sorted(ids))


def reinit_linears(module, std: float, seed: int) -> None:
    """Draw every ``nn.Linear`` weight in ``module`` from N(0, std^2), seeded (biases kept)."""
    import torch

    g = torch.Generator().manual_seed(seed % 2**63)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)


def train_llava(out: Path, *, steps, batch_size, lr, n_train, seed, progress=True,
                full_fraction: float = 0.1, full_every: int = 5, aux_weight: float = 1.0,
                template: str | None = None, lm_init_std: float | None = 0.088,
                lookup_weight: float = 1.0, rope_theta: float | None = 1e6) -> dict:
    """Train the tiny LLaVA.

    Three settings of the language model made its question-image lookups learnable in
    the budget (VQA 67 % -> 93 %, docs/models.md): ``lm_init_std`` redraws its linear
    layers with this std at init (None: transformers' ``initializer_range``, 0.02, sized
    for wide models); ``lookup_weight`` weighs :func:`lookup_loss`; ``rope_theta`` is its
    RoPE base (None: TinySizes', 1e4; 1e6 leaves most rotary dimensions nearly still
    over the ~170 positions, free for matching content).
    """
    import numpy as np
    import torch
    from torch.nn import functional as F

    from semcom.models.llava import DEFAULT_CAPTION_PROMPT, DEFAULT_TEMPLATE

    template = template or DEFAULT_TEMPLATE
    from semcom.models.tiny import TinySizes, build_llava, save_llava, sizes_dict
    from semcom.seeding import derive_seed, rng, seed_everything
    from semcom.world import make_question

    seed_everything(seed)
    t_data = time.perf_counter()
    data = TrainSet(n_train)
    sizes = TinySizes()
    if rope_theta is not None:
        sizes = dataclasses.replace(sizes, lm_rope_theta=float(rope_theta))
    llava, clip, tok, ctok = build_llava(sizes, seed=derive_seed(seed, "llava-init") % 2**31)
    if lm_init_std is not None:
        reinit_linears(llava.model.language_model, lm_init_std,
                       derive_seed(seed, "llava-lm-init"))
    if lookup_weight:
        llava.model.language_model.set_attn_implementation("eager")  # sdpa: no weights
        attr_ids = attribute_token_ids(tok)
    llava.train()
    clip.train()
    vm = clip.vision_model
    cfg = llava.config
    img_id, eos = cfg.image_token_id, cfg.text_config.eos_token_id
    image_token = tok.convert_ids_to_tokens(img_id)
    cenc = ctok(data.captions, padding=True, return_tensors="pt")
    cids_all, catt_all = cenc["input_ids"], cenc["attention_mask"]
    params = unique_params(llava, clip)
    head = attribute_head(sizes.vision_dim, derive_seed(seed, "llava-attr") % 2**31)
    opt = make_optimizer(params + list(head.parameters()), lr)
    g = torch.Generator().manual_seed(derive_seed(seed, "llava-aug") % 2**63)
    plan = batches(len(data), batch_size, steps, seed)
    embed = llava.get_input_embeddings()
    proj = llava.model.multi_modal_projector
    first_full = int(round(steps * (1 - full_fraction)))
    curve, t0 = [], time.perf_counter()
    data_s = t0 - t_data
    bar = _progress(steps, "train llava", progress)
    for step, idx in enumerate(plan):
        idx_t = torch.from_numpy(idx)
        b = len(idx)
        for group in opt.param_groups:
            group["lr"] = lr * schedule(step, steps)
        x = normalize_images(data.images[idx_t])
        plab = data.plabels[idx_t]
        if step < first_full and step % full_every != full_every - 1:
            index = subset_index(plab, g)
            keep = torch.ones(index.shape, dtype=torch.bool)
        else:
            index = None
            keep = keep_masks(plab, g, 0.5, 0.0)
        keep[:, 0] = False                     # strategy "default": CLS not projected
        hs = clip_encode(vm, x, index)
        feats = hs[cfg.vision_feature_layer]                          # [B, 1+K, D]
        lab8 = token_labels(data.plabels8[idx_t], index)[:, 1:]
        lab1 = token_labels(plab, index)[:, 1:]
        l_attr = attribute_loss(head, feats[:, 1:], lab8, lab1, data.attributes[idx_t])
        # CLIP contrastive (image pooled output vs caption)
        img = F.normalize(clip.visual_projection(vm.post_layernorm(hs[-1][:, 0])), dim=-1)
        txt = F.normalize(clip.get_text_features(input_ids=cids_all[idx_t],
                                                 attention_mask=catt_all[idx_t]).pooler_output, dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100) * img @ txt.T
        ar = torch.arange(b)
        l_clip = (F.cross_entropy(logits, ar) + F.cross_entropy(logits.T, ar)) / 2
        # questions / captions for this batch
        r = rng(seed, "llava-batch", step)
        prompts, targets, dtexts, dtargets, relevant = [], [], [], [], []
        for j, i in enumerate(idx):
            q = make_question(data.scenes[i], r)
            if q["relevant"]:
                dtexts.append(q["question"])
                dtargets.append(torch.isin(lab8[j], torch.tensor(q["relevant"])))
            else:
                dtexts.append("a picture of")
                dtargets.append(lab8[j] >= 0)
            if r.random() < 0.25:
                prompts.append(DEFAULT_CAPTION_PROMPT)
                targets.append(data.captions[i])
                relevant.append(None)
            else:
                prompts.append(q["question"])
                targets.append(q["answer"])
                relevant.append(q["relevant"])
        # question -> patch alignment (in CLIP space, after the last vision layer)
        denc = ctok(dtexts, padding=True, return_tensors="pt")
        dt = F.normalize(clip.get_text_features(input_ids=denc["input_ids"],
                                                attention_mask=denc["attention_mask"]).pooler_output, dim=-1)
        pe = F.normalize(clip.visual_projection(vm.post_layernorm(hs[-1][:, 1:])), dim=-1)
        l_dense = dense_loss(pe, dt, torch.stack(dtargets))
        # LM: one <image> placeholder per kept patch token
        seqs, labs = [], []
        for j in range(b):
            text = template.replace("{prompt}", prompts[j])
            pre, post = text.split("<image>", 1)
            p_ids = tok(pre + image_token * int(keep[j].sum()) + post)["input_ids"]
            a_ids = tok(targets[j], add_special_tokens=False)["input_ids"] + [eos]
            seqs.append(p_ids + a_ids)
            labs.append([-100] * len(p_ids) + a_ids)
        n = max(len(q) for q in seqs)
        ids = torch.full((b, n), tok.pad_token_id)
        labels = torch.full((b, n), -100)
        att = torch.zeros((b, n), dtype=torch.long)
        for j, (q, lab) in enumerate(zip(seqs, labs)):
            ids[j, :len(q)] = torch.tensor(q)
            labels[j, :len(q)] = torch.tensor(lab)
            att[j, :len(q)] = 1
        emb = embed(ids)
        pf = proj(feats)[keep]
        emb = emb.masked_scatter((ids == img_id).unsqueeze(-1), pf.to(emb.dtype))
        lm_out = llava(inputs_embeds=emb, attention_mask=att, labels=labels,
                       output_attentions=bool(lookup_weight))
        l_lm = lm_out.loss
        loss = l_lm + 0.5 * l_clip + 0.5 * l_dense + aux_weight * l_attr
        if lookup_weight:
            plen = [lab.count(-100) for lab in labs]
            kept = [lab1[j][keep[j, 1:]] for j in range(b)]
            l_look = lookup_loss(lm_out.attentions, ids, plen, attr_ids, img_id, kept, relevant)
            loss = loss + lookup_weight * l_look
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        parts = {"lm": l_lm.item(), "clip": l_clip.item(), "dense": l_dense.item(),
                 "attr": l_attr.item()}
        if lookup_weight:
            parts["lookup"] = l_look.item()
        if step % 50 == 0 or step == steps - 1:
            curve.append({"step": step, "s": round(time.perf_counter() - t0, 1),
                          **{k: round(v, 4) for k, v in parts.items()}})
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
        bar.update(1)
    bar.close()
    train_s = time.perf_counter() - t0
    llava.eval()
    clip.eval()
    if lookup_weight:
        llava.model.language_model.set_attn_implementation("sdpa")
    save_llava(out, llava, clip, tok, ctok,
               manifest={"trained_by": "semcom train tinyworld --model llava",
                         "prompt_template": template})
    return {"train_s": train_s + data_s, "data_s": round(data_s, 1), "sizes": sizes_dict(sizes),
            "lm_init_std": lm_init_std, "lookup_weight": lookup_weight,
            "params": sum(p.numel() for p in params), "full_token_steps":
            steps - first_full + first_full // full_every,
            "position_embedding": "2-D sin-cos, fixed",
            "loss_curve": curve, "final": curve[-1] if curve else {},
            "np_version": np.__version__}


# --------------------------------------------------------------------------- evaluation

def _tokens_of(backend, samples, bs: int = 100):
    import torch

    out = []
    for b in range(0, len(samples), bs):
        pv = backend.preprocess([s.image for s in samples[b:b + bs]])
        out.append(backend.vision_tokens(pv).tokens.cpu())
    return torch.cat(out)


def _run(task, tokens, mask, samples, bs: int = 100):
    rows = []
    for b in range(0, len(samples), bs):
        rows += task.run_batch(tokens[b:b + bs], mask[b:b + bs], samples[b:b + bs])
    return task.finalize(rows), rows


def _subset_masks(samples, grid_patch: int, n_tokens: int, which: str, seed: int = 0,
                  cls: bool = True, relevant_only: bool = False):
    """Oracle masks (object patches) and random masks with the same number of patches."""
    import numpy as np
    import torch

    from semcom.seeding import rng
    from semcom.world import patch_labels

    masks = torch.zeros(len(samples), n_tokens, dtype=torch.bool)
    masks[:, 0] = cls
    for k, s in enumerate(samples):
        pl = patch_labels(s.meta["labels"], grid_patch, 1)
        rel = s.meta.get("relevant") if relevant_only else None
        obj = np.isin(pl, rel) if rel else pl >= 0
        if which == "objects":
            sel = np.flatnonzero(obj)
        elif which == "background":
            bg = np.flatnonzero(~(pl >= 0))
            sel = rng(seed, "eval-bg", s.sample_id).choice(bg, size=min(len(bg), int(obj.sum())),
                                                           replace=False)
        elif which == "random":
            sel = rng(seed, "eval-random", s.sample_id).choice(len(pl), size=int(obj.sum()),
                                                               replace=False)
        elif which == "none":
            sel = np.zeros(0, np.int64)
        else:
            raise ValueError(which)
        masks[k, 1 + np.asarray(sel, np.int64)] = True
    return masks


def blind_vqa_baseline(eval_samples, n_train: int = 20000, world_seed: int = 0) -> float:
    """Accuracy (%) of the best question-only answerer: the most frequent train answer of
    each question (of its type if the question never occurs in train)."""
    from collections import Counter, defaultdict

    from semcom.metrics import vqa_accuracy
    from semcom.world import question_for, scenes

    by_q, by_t = defaultdict(Counter), defaultdict(Counter)
    for s in scenes(world_seed, "train", n_train):
        q = question_for(world_seed, s, 0)
        by_q[q["question"]][q["answer"]] += 1
        by_t[q["type"]][q["answer"]] += 1
    acc = []
    for s in eval_samples:
        c = by_q.get(s.question) or by_t[s.meta["qtype"]]
        acc.append(vqa_accuracy(c.most_common(1)[0][0], s.answers))
    return 100.0 * sum(acc) / len(acc)


def evaluate(path: Path, model: str, n_eval: int = 1000, progress: bool = True) -> dict:
    import torch

    from cloud.tasks import make_task
    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.data import load_samples
    from semcom.models import load_backend

    backend = load_backend(ModelRef(model, str(path)))
    out: dict = {"model_id": backend.model_id, "eval_images": n_eval}
    task_name = "caption" if model == "blip" else "vqa"
    samples = load_samples(DataConfig(num_images=n_eval), task_name, seed=0)
    tokens = _tokens_of(backend, samples)
    full = torch.ones(tokens.shape[:2], dtype=torch.bool)
    zeros = torch.zeros_like(tokens)
    n_tok = tokens.shape[1]
    p = backend.patch_size

    def m(task, toks, mask, ss=samples):
        metrics, _ = _run(task, toks, mask, ss)
        return {k: v for k, v in metrics.items()}

    def say(msg):
        if progress:
            print(f"  eval: {msg}", file=sys.stderr)

    if model == "blip":
        cap = make_task("caption", backend, max_new_tokens=24)
        ret = make_task("retrieval", backend)
        say("caption, full tokens")
        out["caption"] = m(cap, tokens, full)
        say("retrieval, full tokens")
        out["retrieval"] = m(ret, tokens, full)
        say("zero tokens")
        out["caption_zero_tokens"] = m(cap, zeros, full)
        out["retrieval_zero_tokens"] = m(ret, zeros, full)
        sel = {}
        for name, which, cls in (("objects+cls", "objects", True), ("objects", "objects", False),
                                 ("random+cls", "random", True), ("background+cls", "background", True),
                                 ("cls_only", "none", True)):
            mask = _subset_masks(samples, p, n_tok, which, cls=cls)
            say(f"token subset {name}")
            sel[name] = {"tokens_mean": float(mask[:, 1:].sum(1).float().mean()),
                         "caption_exact_match": m(cap, tokens, mask)["exact_match"]["value"],
                         "retrieval_r_mean": m(ret, tokens, mask)["r_mean"]["value"]}
        out["token_subsets"] = sel
    else:
        vqa = make_task("vqa", backend)
        say("vqa, full tokens")
        out["vqa"] = m(vqa, tokens, full)
        say("zero tokens")
        out["vqa_zero_tokens"] = m(vqa, zeros, full)
        out["vqa_blind_prior"] = {"accuracy": blind_vqa_baseline(samples)}
        sel = {}
        for name, which, rel in (("relevant_objects", "objects", True),
                                 ("all_objects", "objects", False),
                                 ("random", "random", False), ("background", "background", False)):
            mask = _subset_masks(samples, p, n_tok, which, cls=False, relevant_only=rel)
            say(f"token subset {name}")
            sel[name] = {"tokens_mean": float(mask[:, 1:].sum(1).float().mean()),
                         "vqa_accuracy": m(vqa, tokens, mask)["accuracy"]["value"]}
        out["token_subsets"] = sel
        n_cap = min(n_eval, 300)
        cap_samples = load_samples(DataConfig(num_images=n_cap), "caption", seed=0)
        say(f"caption ({n_cap} images), full tokens")
        out["caption"] = m(make_task("caption", backend, max_new_tokens=24), tokens[:n_cap],
                           full[:n_cap], cap_samples)
    return out


def print_metrics(model: str, metrics: dict) -> None:
    def v(d, k):
        x = d.get(k, {})
        return x.get("value") if isinstance(x, dict) else x

    lines = [f"model {metrics.get('model_id')} on {metrics.get('eval_images')} eval scenes"]
    if model == "blip":
        c, r = metrics["caption"], metrics["retrieval"]
        cz, rz = metrics["caption_zero_tokens"], metrics["retrieval_zero_tokens"]
        lines += [
            f"caption  exact_match {v(c, 'exact_match'):.1f}%  CIDEr-D {v(c, 'cider_d'):.3f}  "
            f"BLEU-4 {v(c, 'bleu_4'):.3f}  ROUGE-L {v(c, 'rouge_l'):.3f}",
            f"retrieval img->txt R@1 {v(r, 'txt_r1'):.1f}  R@5 {v(r, 'txt_r5'):.1f}  "
            f"R@10 {v(r, 'txt_r10'):.1f} | txt->img R@1 {v(r, 'img_r1'):.1f}  "
            f"R@5 {v(r, 'img_r5'):.1f}  R@10 {v(r, 'img_r10'):.1f} | r_mean {v(r, 'r_mean'):.1f}",
            f"zero tokens: caption exact_match {v(cz, 'exact_match'):.1f}%  CIDEr-D "
            f"{v(cz, 'cider_d'):.3f}; retrieval R@1 {v(rz, 'txt_r1'):.2f} / {v(rz, 'img_r1'):.2f}",
        ]
        for name, s in metrics["token_subsets"].items():
            lines.append(f"  tokens {name:<15} {s['tokens_mean']:6.1f} patches: caption EM "
                         f"{s['caption_exact_match']:.1f}%  retrieval r_mean {s['retrieval_r_mean']:.1f}")
    else:
        q, qz = metrics["vqa"], metrics["vqa_zero_tokens"]
        per = "  ".join(f"{k.split('/')[1]} {x['value']:.1f}" for k, x in q.items() if "/" in k)
        lines += [f"vqa accuracy {v(q, 'accuracy'):.1f}%  ({per})",
                  f"zero tokens: vqa accuracy {v(qz, 'accuracy'):.1f}% (question-only prior "
                  f"{metrics['vqa_blind_prior']['accuracy']:.1f}%)",
                  f"caption exact_match {v(metrics['caption'], 'exact_match'):.1f}%  CIDEr-D "
                  f"{v(metrics['caption'], 'cider_d'):.3f}"]
        for name, s in metrics["token_subsets"].items():
            lines.append(f"  tokens {name:<17} {s['tokens_mean']:6.1f} patches: vqa "
                         f"{s['vqa_accuracy']:.1f}%")
    print("\n".join(lines))
