"""Frozen-vision language-model experiment: can the tiny Llama of the embedded LLaVA learn
the lookup questions when only it trains?

The committed LLaVA's vision tower is frozen; its layer -2 features of N train scenes are
computed once; then the language model (+ projector) trains on questions only, and
teacher-forced exact match (= greedy answer) on 300 eval questions is printed by type
every 250 steps. Options: --init fresh (a new LM, --layers) or committed; --types
exists (only those questions); --layers / --mlp (fresh LM size); --qfirst (question before the image); --oracle (patch
features = one-hot shape/colour/size/row/col instead of the vision tower's); --attn-sup
(supervise the answer position's attention in --sup-layer, first --sup-heads heads, to
put its mass on the question's object patches); --rel (training-only per-image-token
probe at --rel-layer: is this patch one of the question's objects); --std /
--qk-std (redraw the fresh LM's linear / q,k layers with that std), --rope-theta (its RoPE
base), --qattn-sup (layer 0, head 0 at the answer position onto the question's attribute
words; with --attn-sup --sup-layer 1 this is semcom's lookup_loss). One thread,
~0.55 s per step of 32 on one core. Results: README.md beside this file.

    python experiments/llava_lm/lm_probe.py --init fresh --types exists --steps 1000
"""

import argparse
import collections
import time

import numpy as np
import torch
from torch.nn import functional as F

p = argparse.ArgumentParser()
p.add_argument("--init", choices=["committed", "fresh"], default="committed")
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--ntrain", type=int, default=6000)
p.add_argument("--layers", type=int, default=3)
p.add_argument("--mlp", type=int, default=2, help="fresh LM: MLP width / hidden size")
p.add_argument("--caption-frac", type=float, default=0.0)
p.add_argument(
    "--subset", type=float, default=0.0, help="fraction of steps with object+12bg tokens"
)
p.add_argument("--tag", default="x")
p.add_argument("--oracle", action="store_true")
p.add_argument("--types", default="")
p.add_argument("--rel", type=float, default=0.0)
p.add_argument("--rel-layer", type=int, default=2)
p.add_argument("--qfirst", action="store_true")
p.add_argument("--attn-sup", type=float, default=0.0)
p.add_argument("--sup-layer", type=int, default=1)
p.add_argument("--sup-heads", type=int, default=1)
p.add_argument(
    "--qattn-sup",
    type=float,
    default=0.0,
    help="supervise layer 0, head 0 at the answer position to attend to the question's attribute words",
)
p.add_argument(
    "--rope-theta", type=float, default=0.0, help="fresh LM: RoPE base (default the config's 1e4)"
)
p.add_argument(
    "--std", type=float, default=0.0, help="fresh LM: re-init its linear layers with this std"
)
p.add_argument(
    "--qk-std", type=float, default=0.0, help="fresh LM: re-init q_proj/k_proj with this std"
)
a = p.parse_args()
if a.attn_sup and a.qfirst:
    p.error("--attn-sup assumes the image first (not --qfirst)")
torch.set_num_threads(1)
torch.manual_seed(0)
from semcom.config.model import ModelRef
from semcom.models import load_backend
from semcom.seeding import rng
from semcom.train.tinyworld.data import TrainSet, normalize_images
from semcom.train.tinyworld.llava import clip_encode
from semcom.train.tinyworld.loop import make_optimizer, schedule
from semcom.world import make_question, scenes

b = load_backend(ModelRef("llava", "semcom/models/tiny/llava"))
model, tok = b.model, b.tokenizer
vm = model.model.vision_tower
if a.init == "fresh":
    import dataclasses

    from semcom.models.tiny import TinySizes, build_llava

    fresh, _, _, _ = build_llava(
        dataclasses.replace(TinySizes(), lm_layers=a.layers, lm_mlp=a.mlp), seed=1
    )
    fresh.model.vision_tower = vm
    model = fresh
    if a.rope_theta:
        re_ = model.model.language_model.rotary_emb
        hd = model.config.text_config.head_dim
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
        re_.inv_freq.copy_(inv)
        re_.original_inv_freq.copy_(inv)
    torch.manual_seed(5)
    for name, mod in model.model.language_model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            if a.qk_std and name.endswith(("q_proj", "k_proj")):
                torch.nn.init.normal_(mod.weight, 0.0, a.qk_std)
            elif a.std:
                torch.nn.init.normal_(mod.weight, 0.0, a.std)
model.train()
if a.attn_sup or a.qattn_sup:
    model.set_attn_implementation("eager")
from semcom.train.tinyworld.losses import attribute_token_ids

ATTR_IDS = attribute_token_ids(tok)
for q in vm.parameters():
    q.requires_grad_(False)
t0 = time.time()
data = TrainSet(a.ntrain)
with torch.no_grad():
    feats = torch.cat(
        [
            clip_encode(vm, normalize_images(data.images[i : i + 200]))[-2]
            for i in range(0, a.ntrain, 200)
        ]
    )
ev = scenes(0, "eval", 300)
evimg = torch.from_numpy(np.stack([s.render()[0] for s in ev]))
with torch.no_grad():
    evf = clip_encode(vm, normalize_images(evimg))[-2]


def oracle(plab, attrs):
    B = plab.shape[0]
    out = torch.zeros(B, 145, 96)
    slot = plab.clamp(min=0)
    obj = plab >= 0
    at = torch.gather(attrs, 1, slot.unsqueeze(-1).expand(-1, -1, 3))
    sh = torch.where(obj, at[..., 0] + 1, torch.zeros_like(slot))
    co = torch.where(obj, at[..., 1] + 1, torch.zeros_like(slot))
    sz = torch.where(obj, at[..., 2] + 1, torch.zeros_like(slot))
    ar = torch.arange(144)
    f = torch.cat(
        [
            F.one_hot(sh, 4),
            F.one_hot(co, 6),
            F.one_hot(sz, 3),
            F.one_hot(ar // 12, 12).expand(B, -1, -1),
            F.one_hot(ar % 12, 12).expand(B, -1, -1),
        ],
        -1,
    ).float()
    out[:, 1:, : f.shape[-1]] = f
    return out


if a.oracle:
    import numpy as _np

    from semcom.world import patch_labels
    from semcom.world import vocab as V

    feats = oracle(data.plabels, data.attributes)
    evp = torch.from_numpy(_np.stack([patch_labels(s.render()[1], 8, 1) for s in ev]))
    eva = torch.full((300, 3, 3), -1, dtype=torch.long)
    for i, s in enumerate(ev):
        for k, o in enumerate(s.objects):
            eva[i, k] = torch.tensor(
                [
                    list(V.SHAPES).index(o.shape),
                    list(V.COLOURS).index(o.colour),
                    list(V.SIZES).index(o.size),
                ]
            )
    evf = oracle(evp, eva)
print("features", feats.shape, round(time.time() - t0, 1), "s", flush=True)
r0 = rng(7, "evq")
evq = [make_question(s, r0) for s in ev]
img_id = model.config.image_token_id
eos = model.config.text_config.eos_token_id
image_token = tok.convert_ids_to_tokens(img_id)
_pre = "USER: <image>".split("<image>")[0]
img_start = len(tok(_pre)["input_ids"])
print("img_start", img_start, tok.convert_ids_to_tokens(tok(_pre + image_token)["input_ids"]))
T = "USER: {prompt}\n<image> ASSISTANT:" if a.qfirst else "USER: <image>\n{prompt} ASSISTANT:"
embed = model.get_input_embeddings()
proj = model.model.multi_modal_projector


def batch(f, keep, prompts, targets):
    seqs, labs = [], []
    for j in range(len(prompts)):
        pre, post = T.replace("{prompt}", prompts[j]).split("<image>", 1)
        p_ids = tok(pre + image_token * int(keep[j].sum()) + post)["input_ids"]
        a_ids = tok(targets[j], add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p_ids + a_ids)
        labs.append([-100] * len(p_ids) + a_ids)
    n = max(map(len, seqs))
    B = len(seqs)
    ids = torch.full((B, n), tok.pad_token_id)
    labels = torch.full((B, n), -100)
    att = torch.zeros((B, n), dtype=torch.long)
    for j, (q, l) in enumerate(zip(seqs, labs)):
        ids[j, : len(q)] = torch.tensor(q)
        labels[j, : len(q)] = torch.tensor(l)
        att[j, : len(q)] = 1
    emb = embed(ids)
    pf = proj(f)[keep]
    emb = emb.masked_scatter((ids == img_id).unsqueeze(-1), pf.to(emb.dtype))
    return emb, att, labels, ids, [l.count(-100) for l in labs]


def evaluate():
    model.eval()
    ok = collections.defaultdict(list)
    with torch.no_grad():
        for i in range(0, 300, 100):
            f = evf[i : i + 100]
            keep = torch.ones(f.shape[:2], dtype=torch.bool)
            keep[:, 0] = False
            qs = evq[i : i + 100]
            emb, att, labels, _, _ = batch(
                f, keep, [q["question"] for q in qs], [q["answer"] for q in qs]
            )
            lg = model(inputs_embeds=emb, attention_mask=att).logits[:, :-1]
            lab = labels[:, 1:]
            m = lab != -100
            corr = ((lg.argmax(-1) == lab) | ~m).all(1)
            for q, c in zip(qs, corr.tolist()):
                ok[q["type"]].append(c)
    model.train()
    allc = sum(ok.values(), [])
    return {
        "all": round(100 * float(np.mean(allc)), 1),
        **{k: round(100 * float(np.mean(v)), 1) for k, v in sorted(ok.items())},
    }


relhead = torch.nn.Linear(model.config.text_config.hidden_size, 1)
params = [q for q in model.parameters() if q.requires_grad] + list(relhead.parameters())
opt = make_optimizer(params, a.lr)
g = torch.Generator().manual_seed(3)
print("init", evaluate(), flush=True)
t0 = time.time()
for step in range(a.steps):
    for grp in opt.param_groups:
        grp["lr"] = a.lr * schedule(step, a.steps)
    r = rng(11, "lmexp", step)
    idx = torch.from_numpy(r.choice(a.ntrain, a.bs, replace=False))
    f = feats[idx]
    keep = torch.ones(f.shape[:2], dtype=torch.bool)
    if r.random() < a.subset:
        obj = data.plabels[idx] >= 0
        u = torch.rand(a.bs, 144, generator=g) < 0.1
        keep[:, 1:] = obj | u
    keep[:, 0] = False
    prompts, targets, rel = [], [], []
    for i in idx.tolist():
        if r.random() < a.caption_frac:
            prompts.append("describe the image.")
            targets.append(data.captions[i])
            rel.append([])
        else:
            for _t in range(50):
                q = make_question(data.scenes[i], r)
                if not a.types or q["type"] in a.types.split(","):
                    break
            prompts.append(q["question"])
            targets.append(q["answer"])
            rel.append(q["relevant"])
    emb, att, labels, ids, plen = batch(f, keep, prompts, targets)
    imgpos = [(row == img_id).nonzero().squeeze(-1) for row in ids]
    out = model(
        inputs_embeds=emb,
        attention_mask=att,
        labels=labels,
        output_attentions=bool(a.attn_sup or a.qattn_sup),
        output_hidden_states=bool(a.rel),
    )
    loss = out.loss
    if a.rel:
        H = out.hidden_states[a.rel_layer]
        hs, ts = [], []
        for j in range(a.bs):
            if targets[j] and prompts[j] == "describe the image.":
                continue
            k = keep[j, 1:]
            pl = data.plabels[idx[j]][k]
            tgt = torch.isin(pl, torch.tensor(rel[j], dtype=torch.long)).float()
            pos = imgpos[j]
            hs.append(H[j, pos])
            ts.append(tgt)
        if hs:
            lg_ = relhead(torch.cat(hs)).squeeze(-1)
            lr_ = F.binary_cross_entropy_with_logits(lg_, torch.cat(ts))
            loss = loss + a.rel * lr_
            la = lr_
    if a.attn_sup:
        A = out.attentions[a.sup_layer][:, : a.sup_heads]  # [B, h, T, T]
        ls = []
        for j in range(a.bs):
            if not rel[j]:
                continue
            k = keep[j, 1:]
            pl = data.plabels[idx[j]][k]  # labels of the inserted patches
            tgt = torch.isin(pl, torch.tensor(rel[j]))
            if not tgt.any():
                continue
            row = A[j, :, plen[j] - 1]  # [h, T]
            start = img_start
            mass = row[:, start : start + int(k.sum())][:, tgt].sum(-1)
            ls.append(-torch.log(mass + 1e-6).mean())
        if ls:
            la = torch.stack(ls).mean()
            loss = loss + a.attn_sup * la
    if a.qattn_sup:
        A0 = out.attentions[0][:, 0]  # [B, T, T]
        lq = []
        for j in range(a.bs):
            n_img = int(keep[j].sum())
            pos = torch.isin(ids[j, : plen[j]], ATTR_IDS).nonzero().squeeze(-1)
            if len(pos) == 0:
                continue
            lq.append(-torch.log(A0[j, plen[j] - 1, pos].sum() + 1e-6))
        if lq:
            lqa = torch.stack(lq).mean()
            loss = loss + a.qattn_sup * lqa
            la = lqa if not (a.attn_sup or a.rel) else la + lqa
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if step % 250 == 249 or step == a.steps - 1:
        print(
            step + 1,
            round(time.time() - t0),
            "s loss",
            round(loss.item(), 3),
            "aux",
            round(la.item(), 3) if (a.attn_sup or a.rel or a.qattn_sup) else None,
            evaluate(),
            flush=True,
        )
