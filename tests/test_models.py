"""Backends: tiny random BLIP and LLaVA saved in a temporary directory, reloaded through
``load_backend``; the token path equals the model's own pixel path; masks equal removing
tokens; attention maps are real; bad paths give clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_models import SIZES, save_tiny_blip, save_tiny_llava  # noqa: E402

from semcom.config.model import ModelRef  # noqa: E402
from semcom.errors import ModelLoadError  # noqa: E402

QUESTIONS = ["what colour is the circle?", "how many objects are there?", "is there a red square?"]


@pytest.fixture(scope="module")
def images():
    from semcom.world import scenes

    return [s.render()[0] for s in scenes(0, "eval", 3)]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return save_tiny_blip(tmp_path_factory.mktemp("blip"), seed=1)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava"), seed=2)


@pytest.fixture(scope="module")
def blip(blip_dir):
    from semcom.models import load_backend

    return load_backend(ModelRef("blip", str(blip_dir)))


@pytest.fixture(scope="module")
def llava(llava_dir):
    from semcom.models import load_backend

    return load_backend(ModelRef("llava", str(llava_dir)))


# ---------------------------------------------------------------------------- BLIP


def test_blip_geometry_and_id(blip, blip_dir):
    assert (blip.family, blip.image_size, blip.patch_size, blip.grid) == ("blip", 96, 8, 12)
    assert blip.num_patches == 144 and blip.has_cls and blip.token_dim == 32
    assert blip.tasks == {"caption", "retrieval"}
    assert blip.model_id.startswith("blip-") and len(blip.model_id) == 17
    from semcom.config.model import num_patches

    assert num_patches(ModelRef("blip", str(blip_dir))) == 144


def test_blip_preprocess_equals_training_normalisation(blip, images):
    from semcom.train.tinyworld.data import normalize_images

    pv = blip.preprocess(images)
    assert pv.shape == (3, 3, 96, 96) and pv.dtype == torch.float32
    fast = normalize_images(torch.from_numpy(np.stack(images)))
    assert torch.allclose(pv, fast, atol=1e-5)


def test_blip_caption_token_path_equals_pixel_path(blip, images):
    pv = blip.preprocess(images)
    out = blip.vision_tokens(pv)
    assert out.tokens.shape == (3, 145, 32)
    for beams in (1, 2):
        ref = blip.cap.generate(pixel_values=pv, max_new_tokens=6, num_beams=beams)
        ref = [t.strip() for t in blip.cap_tok.batch_decode(ref, skip_special_tokens=True)]
        assert blip.caption(out.tokens, None, beams=beams, max_new_tokens=6) == ref
    # the text differs when the image does (the decoder reads the tokens)
    logits_a = blip.cap.text_decoder(
        input_ids=torch.tensor([[5]] * 3), encoder_hidden_states=out.tokens
    ).logits
    logits_b = blip.cap.text_decoder(
        input_ids=torch.tensor([[5]] * 3), encoder_hidden_states=torch.zeros_like(out.tokens)
    ).logits
    assert not torch.allclose(logits_a, logits_b)


def test_blip_retrieval_token_path_equals_pixel_path(blip, images):
    pv = blip.preprocess(images)
    tokens = blip.vision_tokens(pv).tokens
    texts = [
        "large red circle at the top",
        "small blue square on the left",
        "large green triangle in the center",
    ]
    enc = blip.ret_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = blip.ret(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            pixel_values=pv,
            use_itm_head=True,
        ).itm_score[:, 1]
        itc = blip.ret(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            pixel_values=pv,
            use_itm_head=False,
        ).itm_score
    assert torch.allclose(blip.itm_scores(tokens, None, texts), itm, atol=1e-5)
    sim = blip.image_embed(tokens, None) @ blip.text_embed(texts).T
    assert torch.allclose(sim, itc, atol=1e-5)
    tf = blip.text_features(texts)
    assert torch.allclose(tf.norm(dim=-1), torch.ones(3), atol=1e-5)
    pe = blip.patch_embeddings(tokens)
    assert pe.shape == (3, 145, 16)
    assert torch.allclose(pe[:, 0], blip.image_embed(tokens, None), atol=1e-5)


def test_blip_mask_equals_removing_tokens(blip, images):
    tokens = blip.vision_tokens(blip.preprocess(images)).tokens
    keep = torch.zeros(3, 145, dtype=torch.bool)
    keep[:, 0] = True
    keep[0, 10:40] = True
    keep[1, 60:65] = True
    keep[2, 1:145:3] = True
    masked = blip.caption(tokens, keep, max_new_tokens=6)
    alone = [blip.caption(tokens[i : i + 1, keep[i]], None, max_new_tokens=6)[0] for i in range(3)]
    assert masked == alone
    s_masked = blip.itm_scores(tokens, keep, ["a", "b", "c"])
    s_alone = torch.cat(
        [blip.itm_scores(tokens[i : i + 1, keep[i]], None, ["abc"[i]]) for i in range(3)]
    )
    assert torch.allclose(s_masked, s_alone, atol=1e-5)
    # what is masked out has no influence at all (transformers 5.x BLIP drops the image
    # mask unless semcom.models.blip.enforce_cross_attention_mask hooks it back in)
    noisy = torch.where(keep.unsqueeze(-1), tokens, 100 * torch.randn_like(tokens))
    assert torch.allclose(blip.itm_scores(noisy, keep, ["a", "b", "c"]), s_masked, atol=1e-6)
    assert blip.caption(noisy, keep, max_new_tokens=6) == masked
    with torch.no_grad():
        ids = torch.tensor([[5]] * 3)
        lm_a = blip.cap.text_decoder(
            input_ids=ids, encoder_hidden_states=tokens, encoder_attention_mask=keep.long()
        ).logits
        lm_b = blip.cap.text_decoder(
            input_ids=ids, encoder_hidden_states=noisy, encoder_attention_mask=keep.long()
        ).logits
    assert torch.allclose(lm_a, lm_b, atol=1e-6)
    # without CLS the image embedding is the mean of what arrived
    keep[:, 0] = False
    emb = blip.image_embed(tokens, keep)
    ref = torch.nn.functional.normalize(
        blip.ret.vision_proj(torch.stack([tokens[i, keep[i]].mean(0) for i in range(3)])), dim=-1
    )
    assert torch.allclose(emb, ref, atol=1e-5)


def test_blip_attention_keys_hidden_are_real(blip, images):
    pv = blip.preprocess(images)
    out = blip.vision_tokens(pv, attn_layers=(0, -1), key_layers=(1,), hidden_layers=(0, -1, 2))
    with torch.no_grad():
        ref = blip.vision(pixel_values=pv, output_attentions=True, output_hidden_states=True)
    assert torch.allclose(out.attentions[0], ref.attentions[0])
    assert torch.allclose(out.attentions[-1], ref.attentions[-1])
    assert torch.allclose(out.attentions[-1].sum(-1), torch.ones(3, 2, 145), atol=1e-5)
    assert torch.allclose(out.hidden[2], ref.hidden_states[2])
    layer = blip.vision.encoder.layers[1]
    with torch.no_grad():
        k = layer.self_attn.qkv(layer.layer_norm1(ref.hidden_states[1]))[..., 32:64]
    assert torch.allclose(out.keys[1], k, atol=1e-5)
    again = blip.vision_tokens_from_layer(out.hidden[0], 0)
    assert torch.allclose(again, out.tokens, atol=1e-5)
    assert torch.allclose(
        blip.vision_tokens_from_layer(ref.hidden_states[2], 2), out.tokens, atol=1e-5
    )
    with pytest.raises(ValueError):
        blip.vision_tokens(pv, attn_layers=(7,))
    with pytest.raises(NotImplementedError):
        blip.answer(out.tokens, None, ["q"] * 3)


def test_blip_caption_only_directory(tmp_path, images):
    from semcom.models import load_backend
    from semcom.models.tiny import TinySizes, build_blip, save_blip

    cap, _, tok = build_blip(TinySizes(**SIZES), seed=3)
    save_blip(tmp_path, cap, None, tok)
    b = load_backend(ModelRef("blip", str(tmp_path / "caption")))
    assert b.tasks == {"caption"}
    pv = b.preprocess(images)
    ref = b.cap_tok.batch_decode(
        b.cap.generate(pixel_values=pv, max_new_tokens=5), skip_special_tokens=True
    )
    assert b.caption(b.vision_tokens(pv).tokens, None, max_new_tokens=5) == [t.strip() for t in ref]
    with pytest.raises(NotImplementedError, match="retrieval"):
        b.text_features(["x"])


def test_model_id_changes_with_weights(blip_dir, tmp_path):
    import shutil

    from semcom.models.base import model_id

    a = model_id("blip", [blip_dir])
    assert a == model_id("blip", [blip_dir])
    copy = tmp_path / "copy"
    shutil.copytree(blip_dir, copy)
    assert model_id("blip", [copy]) == a
    (copy / "train_metrics.json").write_text("{}")  # not part of the model
    assert model_id("blip", [copy]) == a
    w = copy / "retrieval" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    assert model_id("blip", [copy]) != a


# --------------------------------------------------------------------------- LLaVA


def test_llava_answer_token_path_equals_pixel_path(llava, llava_dir, images):
    from transformers import AutoProcessor

    assert llava.tasks == {"vqa", "caption"} and llava.has_cls and llava.num_patches == 144
    pv = llava.preprocess(images)
    out = llava.vision_tokens(pv)
    assert out.tokens.shape == (3, 145, 32)
    proc = AutoProcessor.from_pretrained(str(llava_dir))
    prompts = [llava.template.replace("{prompt}", q) for q in QUESTIONS]
    enc = proc(images=list(images), text=prompts, return_tensors="pt", padding=True)
    assert ((enc["input_ids"] == llava.image_token_id).sum(1) == 144).all()
    assert torch.allclose(enc["pixel_values"], pv, atol=1e-5)
    with torch.no_grad():
        gen = llava.model.generate(**enc, max_new_tokens=5, do_sample=False)
    ref = [
        t.strip()
        for t in proc.tokenizer.batch_decode(
            gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
    ]
    assert llava.answer(out.tokens, None, QUESTIONS, max_new_tokens=5) == ref
    # same logits at the first answer position
    emb, att = llava.build_inputs(out.tokens, None, QUESTIONS)
    with torch.no_grad():
        a = llava.model(inputs_embeds=emb, attention_mask=att).logits[:, -1]
        b = llava.model(**enc).logits[:, -1]
    assert torch.allclose(a, b, atol=1e-4)


def test_llava_placeholders_follow_received_tokens(llava, images):
    tokens = llava.vision_tokens(llava.preprocess(images)).tokens
    keep = torch.zeros(3, 145, dtype=torch.bool)
    keep[0, 1:20] = True
    keep[1, 5:145:2] = True
    keep[2, [0, 7, 70]] = True  # CLS is not projected (strategy default)
    emb, att = llava.build_inputs(tokens, keep, QUESTIONS)
    n_text = att.sum(1) - torch.tensor([19, 70, 2])
    assert len(set(n_text.tolist())) <= 3  # same text part per question length
    masked = llava.answer(tokens, keep, QUESTIONS, max_new_tokens=4)
    alone = [
        llava.answer(
            tokens[i : i + 1, keep[i]],
            None if i < 2 else torch.tensor([[True, True, True]]),
            [QUESTIONS[i]],
            max_new_tokens=4,
        )[0]
        for i in range(3)
    ]
    # sample 2's tokens include CLS at position 0, sample 0/1 start with patches: give
    # them a dummy CLS slot so the layout (CLS first) is respected
    alone[0] = llava.answer(
        torch.cat([tokens[:1, :1], tokens[0:1, keep[0]]], 1),
        torch.tensor([[False] + [True] * 19]),
        [QUESTIONS[0]],
        max_new_tokens=4,
    )[0]
    alone[1] = llava.answer(
        torch.cat([tokens[1:2, :1], tokens[1:2, keep[1]]], 1),
        torch.tensor([[False] + [True] * 70]),
        [QUESTIONS[1]],
        max_new_tokens=4,
    )[0]
    assert masked == alone


def test_llava_projected_embeddings_skip_the_projector(llava, images):
    assert llava.lm_hidden_size == SIZES["lm_dim"] == llava.model.config.text_config.hidden_size
    tokens = llava.vision_tokens(llava.preprocess(images)).tokens
    keep = torch.ones(3, 145, dtype=torch.bool)
    keep[1, 30:100] = False
    with torch.no_grad():
        feats = llava.model.model.multi_modal_projector(tokens)  # [3, 145, H]
    used = llava.used_mask(keep)  # CLS not projected
    emb_a, att_a = llava.build_inputs(tokens, keep, QUESTIONS)
    emb_b, att_b = llava.build_inputs(feats, used, QUESTIONS, projected=True)
    assert torch.equal(att_a, att_b) and torch.allclose(emb_a, emb_b, atol=1e-6)
    ref = llava.answer(tokens, keep, QUESTIONS, max_new_tokens=4)
    assert llava.answer(feats, used, QUESTIONS, max_new_tokens=4, projected=True) == ref
    # the projected embeddings are what the model reads: other embeddings, other logits
    emb_c, _ = llava.build_inputs(feats.flip(1), used.flip(1), QUESTIONS, projected=True)
    assert not torch.allclose(emb_b, emb_c)
    # any number of projected tokens (e.g. a token-merging projector: 9 per image)
    few = feats[:, 1:10]
    cap = llava.caption(few, None, max_new_tokens=3, projected=True)
    assert len(cap) == 3
    _, att = llava.build_inputs(few, None, QUESTIONS, projected=True)
    _, att_full = llava.build_inputs(feats, used, QUESTIONS, projected=True)
    assert torch.equal(att_full.sum(1) - att.sum(1), used.sum(1) - 9)
    with pytest.raises(ValueError, match="projected=True.*32-d"):
        llava.answer(torch.zeros(3, 5, 7), None, QUESTIONS, projected=True)
    with pytest.raises(ValueError, match="vision tower"):
        llava.answer(feats[..., :7], None, QUESTIONS)


def test_llava_attention_text_features_and_layers(llava, images):
    pv = llava.preprocess(images)
    out = llava.vision_tokens(pv, attn_layers=(0, -1), key_layers=(-1,), hidden_layers=(0, -2))
    ref_cfg = llava.tower.config._attn_implementation
    llava.tower.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            ref = llava.tower(pixel_values=pv, output_attentions=True, output_hidden_states=True)
    finally:
        llava.tower.config._attn_implementation = ref_cfg
    assert torch.allclose(out.attentions[0], ref.attentions[0], atol=1e-5)
    assert torch.allclose(out.attentions[-1], ref.attentions[-1], atol=1e-5)
    # the reference ran eager attention, the backend the model's default (sdpa): equal
    # up to float32 rounding (~1e-6); against the same implementation, exactly equal
    assert torch.allclose(out.tokens, ref.hidden_states[-2], atol=1e-5)
    with torch.no_grad():
        same = llava.tower(pixel_values=pv, output_hidden_states=True).hidden_states
    assert torch.equal(out.tokens, same[llava.feature_layer])
    assert torch.allclose(out.hidden[-2], out.tokens)
    assert torch.allclose(llava.vision_tokens_from_layer(out.hidden[0], 0), out.tokens, atol=1e-5)
    tf = llava.text_features(["a red circle", QUESTIONS[0]])
    assert tf.shape == (2, 16) and torch.allclose(tf.norm(dim=-1), torch.ones(2), atol=1e-5)
    pe = llava.patch_embeddings(out.tokens)
    with torch.no_grad():
        img = llava.clip.get_image_features(pixel_values=pv).pooler_output
    # CLS of the patch embeddings = CLIP's own image embedding
    assert torch.allclose(pe[:, 0], torch.nn.functional.normalize(img, dim=-1), atol=1e-5)
    with pytest.raises(NotImplementedError):
        llava.itm_scores(out.tokens, None, ["a"] * 3)


def test_llava_without_clip_has_no_text_features(llava_dir, tmp_path, images):
    import shutil

    from semcom.models import load_backend

    d = tmp_path / "llava"
    shutil.copytree(llava_dir, d)
    shutil.rmtree(d / "clip")
    b = load_backend(ModelRef("llava", str(d)))
    with pytest.raises(NotImplementedError, match="CLIPModel"):
        b.text_features(["x"])
    assert b.answer(b.vision_tokens(b.preprocess(images[:1])).tokens, None, ["q"], max_new_tokens=2)


# ---------------------------------------------------------------------------- errors


def test_bad_paths_give_clear_errors(tmp_path, blip_dir, llava_dir):
    from semcom.models import load_backend

    with pytest.raises(ModelLoadError, match="config.json.*model.safetensors"):
        load_backend(ModelRef("blip", str(tmp_path / "missing")))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_backend(ModelRef("llava", str(tmp_path / "missing")))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ModelLoadError, match="missing: model.safetensors.*tokenizer.*preprocessor"):
        load_backend(ModelRef("llava", str(tmp_path / "half")))
    with pytest.raises(ModelLoadError, match="model_type 'llava'"):
        load_backend(ModelRef("llava", str(blip_dir / "caption")))
    with pytest.raises(ModelLoadError, match="caption/ or retrieval/"):
        load_backend(ModelRef("blip", str(tmp_path)))
    with pytest.raises(ModelLoadError, match="model_type 'blip'"):
        load_backend(ModelRef("blip", str(llava_dir)))


def test_cli_error_for_bad_model_path(tmp_path, capsys):
    from semcom.commands.cli import main

    rc = main(
        [
            "train",
            "tinyworld",
            "--model",
            "blip",
            "--eval-only",
            "--out",
            str(tmp_path / "nowhere"),
            "-q",
        ]
    )
    assert rc == 2
    assert "config.json" in capsys.readouterr().err


# ---------------------------------------------------------------------- embedded models


@pytest.mark.parametrize("name", ["blip", "llava"])
def test_embedded_tiny_model_loads_and_looks_at_the_image(name):
    """The shipped tiny model loads through load_backend and its output depends on the
    image: full tokens score clearly above zeroed tokens. (The judged accuracy targets
    are measured by ``semcom train tinyworld --eval-only`` on 1,000 scenes, not here.)"""
    from semcom.config.model import model_dir
    from semcom.metrics import caption_metrics, vqa_metrics
    from semcom.models import load_backend
    from semcom.world import question_for, scenes

    if not (model_dir(ModelRef(name)) / "semcom.json").is_file():
        pytest.skip(f"tiny {name} weights not trained yet")
    b = load_backend(ModelRef(name))
    sc = scenes(0, "eval", 24)
    tokens = b.vision_tokens(b.preprocess([s.render()[0] for s in sc])).tokens
    zeros = torch.zeros_like(tokens)
    if name == "blip":
        refs = [[s.caption()] for s in sc]
        full, _ = caption_metrics(b.caption(tokens, None), refs)
        zero_caps = b.caption(zeros, None)
        zero, _ = caption_metrics(zero_caps, refs)
        assert len(set(zero_caps)) == 1  # no image, one caption for all
        assert full["cider_d"]["value"] > zero["cider_d"]["value"] + 1.0
        sim = b.image_embed(tokens, None) @ b.text_embed([r[0] for r in refs]).T
        assert (sim.argmax(1) == torch.arange(len(sc))).float().mean() > 0.2  # chance 1/24
    else:
        qs = [question_for(0, s) for s in sc]
        answers = [[q["answer"]] for q in qs]
        full, _ = vqa_metrics(b.answer(tokens, None, [q["question"] for q in qs]), answers)
        zero, _ = vqa_metrics(b.answer(zeros, None, [q["question"] for q in qs]), answers)
        assert full["accuracy"]["value"] > zero["accuracy"]["value"] + 15.0


# ------------------------------------------------------------------------- prompts


def test_prompts_come_from_the_task_and_the_model_directory(
    llava, llava_dir, blip_dir, images, tmp_path
):
    """LLaVA wraps the task's prompt in its chat template; a prompt recorded in
    semcom.json is what the tasks use for that model."""
    import shutil

    from semcom.models import load_backend
    from semcom.tasks import make_task

    assert (
        json.loads((llava_dir / "semcom.json").read_text())["caption_prompt"]
        == "describe the image."
    )
    assert llava.prompts == {"caption": "describe the image."}
    assert make_task("caption", llava).template == llava.caption_prompt == "describe the image."
    tokens = llava.vision_tokens(llava.preprocess(images)).tokens
    ref = llava.answer(tokens, None, ["describe the image."] * 3, max_new_tokens=4)
    assert llava.caption(tokens, None, max_new_tokens=4) == ref
    assert llava.caption(tokens, None, prompt="describe the image.", max_new_tokens=4) == ref
    copy = tmp_path / "blip"
    shutil.copytree(blip_dir, copy)
    manifest = json.loads((copy / "semcom.json").read_text())
    assert make_task("caption", load_backend(ModelRef("blip", str(blip_dir)))).template == ""
    (copy / "semcom.json").write_text(json.dumps({**manifest, "prompts": {"caption": "large"}}))
    recorded = load_backend(ModelRef("blip", str(copy)))
    assert make_task("caption", recorded).template == "large"
    caps = recorded.caption(
        recorded.vision_tokens(recorded.preprocess(images)).tokens, None, max_new_tokens=4
    )
    assert caps == recorded.caption(
        recorded.vision_tokens(recorded.preprocess(images)).tokens,
        None,
        prompt="large",
        max_new_tokens=4,
    )


# ---------------------------------------------------------------------- the fake backend


def test_fake_backend_imports_no_torch_and_is_deterministic():
    import subprocess
    import sys

    code = "import sys, semcom.models.fake, semcom.testing; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
    from semcom.models.base import VLMBackend
    from semcom.models.fake import FakeBackend

    a, b = FakeBackend(encoder="colour", seed=3), FakeBackend(encoder="colour", seed=3)
    assert isinstance(a, VLMBackend) and a.model_id == b.model_id
    assert FakeBackend(encoder="colour", seed=4).model_id != a.model_id
    assert FakeBackend(delay_s=1.0).model_id == FakeBackend().model_id  # time is not a result
    with pytest.raises(ValueError, match="3-d"):
        FakeBackend(token_dim=8)


@pytest.mark.parametrize(
    "encoder,shape", [("means", (2, 5, 3)), ("colour", (2, 145, 32)), ("vit", (2, 145, 32))]
)
def test_fake_backend_encoders(encoder, shape, images):
    from semcom.models.fake import FakeBackend

    be = FakeBackend(encoder=encoder)
    out = be.vision_tokens(
        be.preprocess(images[:2]), attn_layers=(-1,), key_layers=(0,), hidden_layers=(1,)
    )
    n = shape[1]
    assert tuple(out.tokens.shape) == shape and be.num_patches == n - 1
    assert tuple(out.attentions[-1].shape) == (2, be.heads, n, n)
    assert torch.allclose(out.attentions[-1].sum(-1), torch.ones(2, be.heads, n), atol=1e-5)
    assert tuple(out.keys[0].shape) == shape and tuple(out.hidden[1].shape) == shape
    again = be.vision_tokens(be.preprocess(images[:2])).tokens
    assert torch.equal(out.tokens, again)
    # entering at layer 1 with layer 1's hidden state gives the same tokens
    assert torch.allclose(be.vision_tokens_from_layer(out.hidden[1], 1), out.tokens, atol=1e-5)
    with pytest.raises(ValueError, match="does not run"):
        be.vision_from_layer(out.hidden[1], 1, attn_layers=(0,))
    caps = be.caption(out.tokens, None)
    assert caps == be.caption(again, None) and caps[0].split()[0] in ("bright", "dark")
    assert be.answer(out.tokens, None, ["q", "qq"]) != be.answer(out.tokens, None, ["q", "q"])


def test_fake_backend_retrieval_matches_colours():
    """Default mode: a plain red image retrieves the text naming red, not blue."""
    from semcom.models.fake import COLORS, FakeBackend

    be = FakeBackend()
    imgs = [np.full((24, 24, 3), COLORS[c], np.uint8) for c in ("red", "blue")]
    tokens = be.vision_tokens(be.preprocess(imgs)).tokens
    sim = be.image_embed(tokens, None) @ be.text_embed(["a red square", "a blue square"]).T
    assert sim[0, 0] > sim[0, 1] and sim[1, 1] > sim[1, 0]
    itm = be.itm_scores(tokens, None, ["red", "red"])
    assert itm[0] > itm[1]
    # a mask changes what the cloud reads: only the top-left quadrant received
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, 1] = True
    assert be.caption(tokens, mask)[0].split()[1] == "0"
