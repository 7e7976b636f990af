"""Tiny-world training data: the rendered train scenes and their labels, image
normalisation, batch order, and the token subsets the encoders and decoders train on."""

from __future__ import annotations

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
        self.plabels = torch.from_numpy(np.stack(p1))  # touching patches (token dropout)
        self.plabels8 = torch.from_numpy(np.stack(p8))  # >= 8 px (alignment targets)
        self.captions = [s.caption() for s in self.scenes]
        # per scene and object slot (-1: no object): attribute class ids, for the
        # auxiliary attribute loss (see :func:`semcom.train.tinyworld.losses.attribute_loss`)
        from semcom.world import vocab as V

        attr = np.full((n, V.MAX_OBJECTS, 3), -1, np.int64)
        shapes, colours, sizes = list(V.SHAPES), list(V.COLOURS), list(V.SIZES)
        for i, s in enumerate(self.scenes):
            for k, o in enumerate(s.objects):
                attr[i, k] = (shapes.index(o.shape), colours.index(o.colour), sizes.index(o.size))
        self.attributes = torch.from_numpy(attr)  # [N, MAX_OBJECTS, 3]

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


def batches(n: int, bs: int, steps: int, seed: int):
    """Indices of each step: seeded permutations, epoch after epoch."""
    import numpy as np

    from semcom.seeding import rng

    out, epoch = [], 0
    while len(out) < steps:
        perm = rng(seed, "tinyworld-batches", epoch).permutation(n)
        out += [perm[i : i + bs] for i in range(0, n - bs + 1, bs)]
        epoch += 1
    return [np.sort(x) for x in out[:steps]]


# -------------------------------------------------------------------------- token subsets


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
