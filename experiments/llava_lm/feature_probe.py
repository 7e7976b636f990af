"""Linear probe of a LLaVA's vision features: can shape, colour and size be read linearly
from each object patch of the layer -2 features?

Computes the vision tower's layer -2 features of 1,500 train scenes, keeps the patches
that show >= 8 pixels of an object, and fits one softmax regression per attribute on 80 %
of them (Adam, 300 steps, standardised features); prints accuracy on the other 20 %.
One thread. The number in README.md section 3 was measured on the LLaVA trained without
the language-model options (the weights of commit e0a2126):

    python experiments/llava_lm/feature_probe.py [MODEL_DIR]
"""

import sys

import torch

torch.set_num_threads(1)
from semcom.config.model import ModelRef
from semcom.models import load_backend
from semcom.train.tinyworld.data import TrainSet, normalize_images
from semcom.train.tinyworld.llava import clip_encode

b = load_backend(
    ModelRef("llava", sys.argv[1] if len(sys.argv) > 1 else "semcom/models/tiny/llava")
)
vm = b.model.model.vision_tower
data = TrainSet(1500)
with torch.no_grad():
    f = torch.cat(
        [
            clip_encode(vm, normalize_images(data.images[i : i + 250]))[-2][:, 1:]
            for i in range(0, 1500, 250)
        ]
    )
lab = data.plabels8
m = lab >= 0
slot = lab.clamp(min=0)
attrs = torch.gather(data.attributes, 1, slot.unsqueeze(-1).expand(-1, -1, 3))
X = f[m]
X = (X - X.mean(0)) / X.std(0)
n = len(X)
tr = torch.arange(n) < int(0.8 * n)
for k, name in enumerate(["shape", "colour", "size"]):
    y = attrs[..., k][m]
    C = int(y.max()) + 1
    W = torch.zeros(X.shape[1], C, requires_grad=True)
    bb = torch.zeros(C, requires_grad=True)
    opt = torch.optim.Adam([W, bb], 0.05)
    for _ in range(300):
        opt.zero_grad()
        l = torch.nn.functional.cross_entropy(X[tr] @ W + bb, y[tr])
        l.backward()
        opt.step()
    acc = ((X[~tr] @ W + bb).argmax(1) == y[~tr]).float().mean().item()
    print(name, "linear probe acc on object patches", round(100 * acc, 1), "n", n)
