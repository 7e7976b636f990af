"""``semcom train tinyworld``: the auxiliary attribute loss and a few real training steps
of each model through the CLI (saved, reloaded through ``load_backend``)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def _onehot_tokens(rows):
    """Tokens whose 11 features are the logits the identity head returns (x 50)."""
    from semcom.train.tinyworld.losses import ATTRIBUTE_CLASSES

    n = sum(ATTRIBUTE_CLASSES)
    t = torch.zeros(1, len(rows), n)
    for j, idx in enumerate(rows):
        for i in idx:
            t[0, j, i] = 50.0
    return t


def _identity_head():
    from semcom.train.tinyworld.losses import ATTRIBUTE_CLASSES

    n = sum(ATTRIBUTE_CLASSES)
    head = torch.nn.Linear(n, n, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(n))
    return head


def test_attribute_loss_targets():
    """Patch 0 shows object slot 1 (triangle, purple, large: shape class 1+2, colour 4,
    size 1), patch 1 is background, patch 2 has a few object pixels (ignored)."""
    from semcom.train.tinyworld.losses import attribute_loss

    attrs = torch.tensor([[[0, 0, 0], [2, 4, 1], [-1, -1, -1]]])
    lab8 = torch.tensor([[1, -1, -1]])
    lab1 = torch.tensor([[1, -1, 0]])
    head = _identity_head()
    right = _onehot_tokens([[3, 4 + 4, 9 + 1], [0], [1]])
    assert attribute_loss(head, right, lab8, lab1, attrs).item() < 1e-6
    for wrong in (
        [[1, 4 + 4, 9 + 1], [0], [1]],  # wrong shape
        [[3, 4 + 0, 9 + 1], [0], [1]],  # wrong colour
        [[3, 4 + 4, 9 + 0], [0], [1]],  # wrong size
        [[3, 4 + 4, 9 + 1], [2], [1]],
    ):  # background called a shape
        assert attribute_loss(head, _onehot_tokens(wrong), lab8, lab1, attrs).item() > 10
    # patch 2 (1..7 object pixels) does not count
    other = _onehot_tokens([[3, 4 + 4, 9 + 1], [0], [0, 4, 9]])
    assert attribute_loss(head, other, lab8, lab1, attrs).item() < 1e-6


def test_trainset_attributes_follow_the_scenes():
    from semcom.train.tinyworld.data import TrainSet
    from semcom.world import vocab as V

    data = TrainSet(20)
    for i, s in enumerate(data.scenes):
        for k in range(V.MAX_OBJECTS):
            a = data.attributes[i, k].tolist()
            if k < len(s.objects):
                o = s.objects[k]
                assert a == [
                    list(V.SHAPES).index(o.shape),
                    list(V.COLOURS).index(o.colour),
                    list(V.SIZES).index(o.size),
                ]
            else:
                assert a == [-1, -1, -1]


@pytest.mark.parametrize("model", ["blip", "llava"])
def test_train_tinyworld_few_steps(tmp_path, model):
    from semcom.commands.cli import main
    from semcom.config.model import ModelRef
    from semcom.models import load_backend

    out = tmp_path / model
    rc = main(
        [
            "train",
            "tinyworld",
            "--model",
            model,
            "--steps",
            "3",
            "--train-images",
            "64",
            "--no-eval",
            "--out",
            str(out),
            "-q",
            "--aux-weight",
            "0.5",
        ]
    )
    assert rc == 0
    rec = json.loads((out / "train_metrics.json").read_text())
    assert rec["steps"] == 3 and rec["aux_weight"] == 0.5
    assert all("attr" in row for row in rec["loss_curve"])
    if model == "llava":  # the LLaVA recipe is the default: lookup loss, std, RoPE base
        assert rec["lookup_weight"] == 1.0 and rec["lm_init_std"] == 0.088
        assert all(row["lookup"] > 0 for row in rec["loss_curve"])
        cfg = json.loads((out / "config.json").read_text())["text_config"]
        assert cfg["rope_parameters"]["rope_theta"] == 1e6
    b = load_backend(ModelRef(model, str(out)))
    assert b.model_id == rec["model_id"] and b.num_patches == 144


def test_llava_prompt_template_is_trained_and_saved(tmp_path, capsys):
    """``--prompt-template`` trains LLaVA with that conversation template and saves it in
    semcom.json, where the backend reads it; a template without <image> / {prompt}, or
    one for BLIP, is refused before training."""
    from semcom.commands.cli import main
    from semcom.config.model import ModelRef
    from semcom.models import load_backend

    t = "USER: {prompt}\n<image> ASSISTANT:"
    out = tmp_path / "llava"
    assert (
        main(
            [
                "train",
                "tinyworld",
                "--model",
                "llava",
                "--steps",
                "2",
                "--train-images",
                "64",
                "--no-eval",
                "--out",
                str(out),
                "-q",
                "--prompt-template",
                t,
            ]
        )
        == 0
    )
    assert json.loads((out / "semcom.json").read_text())["prompt_template"] == t
    assert load_backend(ModelRef("llava", str(out))).template == t
    for model, bad in (("llava", "no image here {prompt}"), ("blip", t)):
        rc = main(
            [
                "train",
                "tinyworld",
                "--model",
                model,
                "--steps",
                "1",
                "--out",
                str(tmp_path / "x"),
                "-q",
                "--prompt-template",
                bad,
            ]
        )
        assert rc == 2 and "--prompt-template" in capsys.readouterr().err


def test_lookup_loss_is_zero_only_when_both_steps_look_at_the_right_tokens():
    """Layer 0 at the last prompt position on the attribute words, layer 1 on the image
    tokens of the question's object: loss 0; uniform attention: > 0; caption rows skipped."""
    from semcom.train.tinyworld.losses import lookup_loss

    img, red, circle, other = 9, 5, 6, 7
    ids = torch.tensor([[1, img, img, img, other, red, circle, other]])
    labels = [torch.tensor([-1, 0, 1])]  # object slots of the 3 image tokens
    attr = torch.tensor([red, circle])
    t = ids.shape[1]
    uniform = [torch.full((1, 2, t, t), 1.0 / t) for _ in range(2)]
    sharp = [torch.zeros(1, 2, t, t) for _ in range(2)]
    sharp[0][0, 0, 7, 5] = sharp[0][0, 0, 7, 6] = 0.5  # the question's words
    sharp[1][0, 0, 7, 2] = 1.0  # image token of object 0
    assert lookup_loss(sharp, ids, [8], attr, img, labels, [[0]]).item() < 1e-5
    u = lookup_loss(uniform, ids, [8], attr, img, labels, [[0]]).item()
    assert u > 1.0
    assert lookup_loss(sharp, ids, [8], attr, img, labels, [[1]]).item() > 5  # wrong object
    # "no" to "is there": only the word step; a caption prompt (None): nothing
    assert lookup_loss(sharp, ids, [8], attr, img, labels, [[]]).item() < 1e-5
    assert lookup_loss(uniform, ids, [8], attr, img, labels, [None]).item() == 0.0


def test_llava_only_options_are_refused_for_blip(capsys):
    from semcom.commands.cli import main

    for flag in ("--lookup-weight", "--lm-init-std", "--rope-theta"):
        assert main(["train", "tinyworld", "--model", "blip", "--steps", "1", flag, "1"]) == 2
        assert flag in capsys.readouterr().err
    assert (
        main(["train", "tinyworld", "--model", "llava", "--steps", "1", "--lm-init-std", "-1"]) == 2
    )
    assert "--lm-init-std must be > 0" in capsys.readouterr().err
