"""P(yes) / P(no) of a LLaVA on 300 "is there a <colour> <shape>?" questions: a LLaVA
trained without the language-model options (README.md beside this file) gives P(yes)
~0.55 whatever the image and the question, on train and eval scenes alike.

    python experiments/llava_lm/exists_probe.py [MODEL_DIR] [eval|train]
"""

import collections
import sys

import numpy as np
import torch

from semcom.config.model import ModelRef
from semcom.models import load_backend
from semcom.seeding import rng
from semcom.world import make_question, scenes

path = sys.argv[1] if len(sys.argv) > 1 else "semcom/models/tiny/llava"
split = sys.argv[2] if len(sys.argv) > 2 else "eval"
torch.set_num_threads(1)
b = load_backend(ModelRef("llava", path))
tok = b.tokenizer
Y, N = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
sc = scenes(0, split, 300)
r = rng(123, "probe")
qs = []
for s in sc:
    for _ in range(30):
        q = make_question(s, r)
        if q["type"] == "exists":
            break
    qs.append(q)
imgs = np.stack([s.render()[0] for s in sc])
with torch.no_grad():
    toks = b.vision_tokens(b.preprocess(list(imgs))).tokens
    mask = torch.ones(toks.shape[:2], dtype=torch.bool)
    emb, att = b.build_inputs(toks, mask, [q["question"] for q in qs])
    out = b.model(inputs_embeds=emb, attention_mask=att)
    lg = out.logits[:, -1]
p = torch.softmax(lg, -1)
py, pn = p[:, Y], p[:, N]
ans = np.array([q["answer"] for q in qs])
print("P(yes) over all 300: min", py.min().item(), "max", py.max().item(), "std", py.std().item())
print(
    "mean P(yes) | yes", py[ans == "yes"].mean().item(), "P(no)|yes", pn[ans == "yes"].mean().item()
)
print("mean P(yes) | no", py[ans == "no"].mean().item(), "P(no)|no", pn[ans == "no"].mean().item())
top = lg.argmax(-1)
print(collections.Counter(tok.convert_ids_to_tokens(top.tolist())))
print("acc", np.mean([(("yes" if py[i] > pn[i] else "no") == ans[i]) for i in range(len(qs))]))
