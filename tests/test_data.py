"""Datasets in their real layouts (tiny fixtures), lazy and robust image reading, the
official VQA accuracy, data fingerprints, and runs over unlabelled or broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcom.config import load_config
from semcom.data import (
    ImageReadError,
    LazySample,
    fingerprint,
    image_suffixes,
    load_samples,
    read_batch,
    read_image,
    release,
)
from semcom.errors import ConfigError, DataError


def _img(path: Path, size=(40, 30), colour=(200, 30, 30), fmt=None, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def _data(*overrides):
    return load_config(None, list(overrides)).data


# ------------------------------------------------------------------------- image reading


def test_every_pillow_format_is_read_and_normalised(tmp_path):
    assert {".jpg", ".png", ".webp", ".gif", ".tif", ".bmp"} <= set(image_suffixes())
    assert ".h5" not in image_suffixes()  # Pillow only identifies HDF5, it cannot decode it
    a = read_image(_img(tmp_path / "a.gif", mode="P", colour=3))
    assert a.shape == (30, 40, 3) and a.dtype == np.uint8
    # transparency composited on white, as transformers' convert_rgb
    rgba = _img(tmp_path / "t.png", mode="RGBA", colour=(0, 0, 0, 0))
    assert (read_image(rgba) == 255).all()
    # 16-bit greyscale scaled to 8 bits, not clipped
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png") == 255).all()
    # EXIF orientation 6 (rotate 90): the decoded image is upright, H x W swapped
    im = Image.new("RGB", (40, 30), (10, 200, 10))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape == (40, 30, 3)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.jpg", b"this is not an image\n", "not an image"),
    ],
)
def test_unreadable_files_name_the_file_and_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as e:
        read_image(tmp_path / name)
    assert e.value.file.endswith(name) and isinstance(e.value, DataError)


def test_truncated_and_oversized(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut.jpg")
    # refused from the header: no pixel decoded (a 20000 x 10000 PNG is 200 MP)
    with pytest.raises(ImageReadError, match=r"oversized: 300 x 200 = 60,000 pixels"):
        read_image(tmp_path / "full.jpg", max_pixels=50_000)


def test_lazy_samples_decode_per_batch_and_release(tmp_path):
    for i in range(3):
        _img(tmp_path / f"p{i}.png", size=(20 + i, 10))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    samples = load_samples(_data("data.dataset=folder", f"data.path={tmp_path}"), "caption")
    assert all(isinstance(s, LazySample) for s in samples)
    assert not any(s.source.loaded for s in samples)  # listing decodes nothing
    assert samples[1].hw == (10, 20) and not samples[1].source.loaded  # header only
    ok, failed = read_batch(samples)
    assert [s.sample_id for s in ok] == ["p0.png", "p1.png", "p2.png"]
    assert [(s.sample_id, "not an image" in e.reason) for s, e in failed] == [("bad.jpg", True)]
    assert ok[2].image.shape == (10, 22, 3)
    release(samples)
    assert not any(s.source.loaded for s in samples)
    assert "LazySample('p0.png'" in repr(samples[1]) and not samples[1].source.loaded


# ------------------------------------------------------------------------------- folder


def test_folder_ids_are_relative_paths_with_extension(tmp_path):
    for ext in ("png", "jpg", "webp"):
        _img(tmp_path / f"photo.{ext}")
    _img(tmp_path / "trip" / "photo.jpg")
    _img(tmp_path / ".hidden" / "x.png")
    (tmp_path / "readme.txt").write_text("not a sample")
    (tmp_path / "captions.json").write_text(
        json.dumps({"photo.jpg": ["a red photo"], "trip/photo.jpg": "one caption"})
    )
    (tmp_path / "questions.json").write_text(
        json.dumps(
            [
                {"file": "photo.png", "question": "what colour?", "answer": "red"},
                {"file": "photo.png", "question": "how many?", "answers": ["1", "one"]},
                {"file": "trip/photo.jpg", "question": "where?", "id": "w1", "type": "place"},
            ]
        )
    )
    cfg = _data("data.dataset=folder", f"data.path={tmp_path}", "data.num_images=null")
    cap = load_samples(cfg, "caption")
    ids = [s.sample_id for s in cap]
    assert ids == ["photo.jpg", "photo.png", "photo.webp", "trip/photo.jpg"]
    assert [s.image_id for s in cap] == ids
    assert cap[0].captions == ["a red photo"] and cap[3].captions == ["one caption"]
    assert cap[1].captions == []  # unlabelled
    vqa = load_samples(cfg, "vqa")
    assert [s.sample_id for s in vqa] == ["photo.png#q0", "photo.png#q1", "trip/photo.jpg#w1"]
    assert vqa[1].answers == ["1", "one"] and vqa[2].answers == [] and vqa[2].meta["qtype"]
    assert vqa[0].source is vqa[1].source  # one file, decoded once per batch
    with pytest.raises(DataError, match="retrieval needs captions"):
        load_samples(cfg, "retrieval")  # two images have no caption: no gallery
    (tmp_path / "questions.json").unlink()
    with pytest.raises(DataError, match="questions.json"):
        load_samples(cfg, "vqa")
    with pytest.raises(DataError, match="not found"):
        load_samples(_data("data.dataset=folder", f"data.path={tmp_path / 'no'}"), "caption")
    with pytest.raises(DataError, match="unknown task"):
        load_samples(cfg, "detection")
    with pytest.raises(ConfigError, match="data.path"):
        _data("data.dataset=folder")


# ------------------------------------------------------------------ annotation datasets


def test_coco_captions_file(tmp_path):
    root = tmp_path / "coco"
    for iid in (139, 285):
        _img(root / "val2017" / f"{iid:012d}.jpg")
    ann = {
        "info": {},
        "licenses": [],
        "images": [
            {"id": 139, "file_name": "000000000139.jpg", "height": 30, "width": 40},
            {"id": 285, "file_name": "000000000285.jpg", "height": 30, "width": 40},
        ],
        "annotations": [
            {"image_id": 285, "id": 1, "caption": "A big bear. "},
            {"image_id": 139, "id": 2, "caption": "A living room."},
            {"image_id": 139, "id": 3, "caption": "A room with a TV."},
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(ann))
    cfg = _data(
        "data.dataset=coco",
        f"data.path={root}",
        "data.annotations=annotations/captions_val2017.json",
    )
    s = load_samples(cfg, "caption")  # images found at <root>/val2017 (beside annotations/)
    assert [x.sample_id for x in s] == ["coco-139", "coco-285"]
    assert s[0].captions == ["A living room.", "A room with a TV."] and s[1].captions == [
        "A big bear."
    ]
    assert s[1].image.shape == (30, 40, 3)
    assert len(load_samples(cfg, "retrieval")) == 2
    with pytest.raises(DataError, match="no questions"):
        load_samples(cfg, "vqa")


def test_karpathy_original_and_blip_layouts(tmp_path):
    imgs = tmp_path / "flickr30k-images"
    for n in ("1000.jpg", "2000.jpg", "3000.jpg"):
        _img(imgs / n)
    sents = [{"raw": f"caption {k}.", "tokens": ["caption", str(k)]} for k in range(5)]
    orig = {
        "dataset": "flickr30k",
        "images": [
            {"filename": "1000.jpg", "split": "train", "sentences": sents, "imgid": 0},
            {"filename": "2000.jpg", "split": "test", "sentences": sents, "imgid": 1},
            {"filename": "3000.jpg", "split": "test", "sentences": sents[:2], "imgid": 2},
        ],
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(orig))
    base = ["data.dataset=karpathy", f"data.path={tmp_path}", "data.images=flickr30k-images"]
    test = load_samples(_data(*base, "data.annotations=dataset_flickr30k.json"), "retrieval")
    assert [s.sample_id for s in test] == ["2000.jpg", "3000.jpg"]  # eval = the test split
    assert len(test[0].captions) == 5 and test[1].captions == ["caption 0.", "caption 1."]
    train = load_samples(
        _data(*base, "data.annotations=dataset_flickr30k.json", "data.split=train"), "caption"
    )
    assert [s.sample_id for s in train] == ["1000.jpg"]
    blip = [
        {"image": "flickr30k-images/2000.jpg", "caption": ["a dog.", "a brown dog."]},
        {"image": "flickr30k-images/3000.jpg", "caption": ["two men."]},
    ]
    (tmp_path / "flickr30k_test.json").write_text(json.dumps(blip))
    cfg = _data(
        "data.dataset=karpathy", f"data.path={tmp_path}", "data.annotations=flickr30k_test.json"
    )
    s = load_samples(cfg, "caption")
    assert [x.sample_id for x in s] == ["flickr30k-images/2000.jpg", "flickr30k-images/3000.jpg"]
    assert s[0].captions == ["a dog.", "a brown dog."] and s[0].image.shape == (30, 40, 3)


def _vqav2(tmp_path: Path, with_answers: bool = True):
    for iid in (42, 7):
        _img(tmp_path / "val2014" / f"COCO_val2014_{iid:012d}.jpg")
    qs = {
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 42, "question": "What color is it?", "question_id": 420},
            {"image_id": 7, "question": "Is it red?", "question_id": 70},
            {"image_id": 42, "question": "How many?", "question_id": 421},
        ],
    }
    (tmp_path / "q.json").write_text(json.dumps(qs))
    ann = {
        "annotations": [
            {
                "question_id": qid,
                "image_id": iid,
                "answer_type": atype,
                "question_type": "what",
                "multiple_choice_answer": ans[0],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                    for k, a in enumerate(ans)
                ],
            }
            for qid, iid, atype, ans in (
                (420, 42, "other", ["red"] * 6 + ["dark red"] * 4),
                (70, 7, "yes/no", ["yes"] * 10),
                (421, 42, "number", ["2"] * 2 + ["3"] * 8),
            )
        ]
    }
    (tmp_path / "a.json").write_text(json.dumps(ann))
    extra = ["data.annotations=a.json"] if with_answers else []
    return _data("data.dataset=vqav2", f"data.path={tmp_path}", "data.questions=q.json", *extra)


def test_vqav2_questions_and_annotations(tmp_path):
    cfg = _vqav2(tmp_path)
    s = load_samples(cfg, "vqa")
    # grouped by image in file order: the questions of image 42, then 7
    assert [x.sample_id for x in s] == ["vqav2-420", "vqav2-421", "vqav2-70"]
    assert len(s[0].answers) == 10 and s[2].meta["qtype"] == "yes/no"
    assert s[0].image.shape == (30, 40, 3) and s[0].source is s[1].source
    assert len(load_samples(cfg, "caption")) == 2  # one per image, no captions
    from semcom.tasks.vqa import VQATask

    per, metrics = VQATask.score(s, ["Red", "two", "yes"])
    assert [round(p["accuracy"], 4) for p in per] == [100.0, 60.0, 100.0]
    assert metrics["accuracy/number"]["value"] == pytest.approx(60.0)
    # test-dev: no annotations, the questions still run
    blind = load_samples(_vqav2(tmp_path, with_answers=False), "vqa")
    assert [x.answers for x in blind] == [[], [], []]


def test_gqa_questions(tmp_path):
    _img(tmp_path / "images" / "n1.jpg")
    _img(tmp_path / "images" / "n2.jpg")
    qs = {
        "201": {
            "imageId": "n2",
            "question": "Is the sky blue?",
            "answer": "yes",
            "types": {"structural": "verify"},
        },
        "202": {
            "imageId": "n1",
            "question": "What is it?",
            "answer": "cat",
            "types": {"structural": "query"},
        },
    }
    (tmp_path / "testdev_balanced_questions.json").write_text(json.dumps(qs))
    cfg = _data(
        "data.dataset=gqa",
        f"data.path={tmp_path}",
        "data.questions=testdev_balanced_questions.json",
    )
    s = load_samples(cfg, "vqa")
    assert [(x.sample_id, x.image_id, x.answers, x.meta["qtype"]) for x in s] == [
        ("gqa-201", "n2", ["yes"], "verify"),
        ("gqa-202", "n1", ["cat"], "query"),
    ]
    assert s[1].image.shape == (30, 40, 3)


@pytest.mark.coco
def test_coco_mini(coco_mini):
    cfg = _data("data.dataset=coco-mini", "data.num_images=3", f"data.path={coco_mini}")
    s = load_samples(cfg, "caption")
    assert len(s) == 3 and len(s[0].captions) == 5 and s[0].image.ndim == 3
    assert s[0].sample_id == f"coco-{s[0].image_id}" and s[0].meta["file"].startswith("val2017/")


# --------------------------------------------------------------------- the VQA accuracy


def _official(pred: str, answers: list[str]) -> float:
    """The VQA API's vqaEval.py loop, transcribed: the prediction fully normalised, the
    human answers' punctuation processed only when they disagree, then for each answer
    dict the others that match, min(1, n / 3), averaged."""
    from semcom.metrics.vqa import _process_punctuation, normalize_answer

    gts = [{"answer": a, "answer_id": i} for i, a in enumerate(answers)]
    res = normalize_answer(pred)
    if len({g["answer"] for g in gts}) > 1:
        for g in gts:
            g["answer"] = _process_punctuation(g["answer"])
    accs = []
    for g in gts:
        others = [o for o in gts if o != g]
        accs.append(min(1, len([o for o in others if o["answer"] == res]) / 3))
    return sum(accs) / len(accs)


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("yes", ["yes"] * 10, 1.0),
        ("no", ["yes"] * 10, 0.0),
        ("2", ["2"] * 3 + ["3"] * 7, 0.9),  # 3 matches: 7 subsets keep 3, 3 keep 2
        ("2", ["2"] * 2 + ["3"] * 8, 0.6),
        ("2", ["2"] + ["3"] * 9, 0.3),
        ("Two.", ["2"] * 4 + ["two"] * 6, 1.0),  # prediction: number word -> digit
        ("the dog", ["dog"] * 5 + ["a dog"] * 5, 1.0),  # article dropped from the prediction
        ("dont", ["don't"] * 10, 1.0),  # contraction restored
        ("red, white", ["red white"] * 3 + ["red, white"] * 7, 1.0),  # ", " stripped
        ("10,000", ["10000"] * 3 + ["10 000"] * 7, 0.9),  # digit comma stripped
        ("yes.", ["Yes"] * 10, 0.0),  # identical human answers are left as they are
    ],
)
def test_vqa_accuracy_is_the_official_formula(pred, answers, expected):
    from semcom.metrics.vqa import vqa_accuracy

    assert _official(pred, answers) == pytest.approx(expected)
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)


def test_vqa_accuracy_with_few_answers_is_normalised_exact_match():
    from semcom.metrics.vqa import vqa_accuracy

    assert vqa_accuracy("The Cat.", ["cat"]) == 1.0
    assert vqa_accuracy("dog", ["cat"]) == 0.0
    assert vqa_accuracy("cat", ["cat", "kitty"]) == 0.5


# --------------------------------------------------------------------------- identities


def test_fingerprint_follows_image_bytes_and_references(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    cfg = _data("data.dataset=folder", f"data.path={tmp_path}")
    f0 = fingerprint(cfg, ["caption"])
    assert f0 == fingerprint(cfg, ["caption"]) and len(f0) == 16
    assert fingerprint(_data(), ["caption"]) is None  # the tiny world: its config
    _img(tmp_path / "b.png", colour=(0, 0, 255))  # same name, same size, other pixels
    f1 = fingerprint(cfg, ["caption"])
    assert f1 != f0
    (tmp_path / "captions.json").write_text(json.dumps({"a.png": ["x"]}))
    assert fingerprint(cfg, ["caption"]) != f1
    # moving the folder keeps the identity (paths are not hashed, content is)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    cfg2 = _data("data.dataset=folder", f"data.path={moved}")
    assert fingerprint(cfg2, ["caption"]) == fingerprint(cfg2, ["caption"])
    from semcom.fingerprint import run_id

    c1 = load_config(None, ["data.dataset=folder", f"data.path={moved}"])
    rid = run_id(c1)
    _img(moved / "a.png", colour=(1, 2, 3))
    assert run_id(c1) != rid  # a changed image is a new run: no stale record, no journal


# ---------------------------------------------------------------------------- the runs


@pytest.fixture
def fake_runner(monkeypatch):
    from semcom.commands import runner
    from semcom.models.fake import FakeBackend
    from semcom.testing import FakeLink

    be = FakeBackend(encoder="means", grid=2, tasks=("caption",), model_id="fake0001")
    monkeypatch.setattr(runner, "get_backend", lambda ref, device: be)
    monkeypatch.setattr(runner, "build_link", lambda cfg: FakeLink())
    return runner


def _broken_folder(root: Path, n: int = 5) -> Path:
    for i in range(n):
        _img(root / f"im{i:02d}.jpg", colour=(40 * i, 90, 200))
    good = (root / "im00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("hello\n")
    return root


def test_unlabelled_folder_with_broken_files_runs_through(tmp_path, fake_runner):
    root = _broken_folder(tmp_path / "photos")
    cfg = load_config(
        None,
        [
            "data.dataset=folder",
            f"data.path={root}",
            "data.num_images=null",
            "edge.method=jpeg",
            "run.batch_size=3",
            "run.progress=false",
            f"run.out_dir={tmp_path / 'runs'}",
        ],
    )
    res = fake_runner.run(cfg)
    assert res.ok and res.samples_failed == 3 and res.exit_code == 3
    rows = [json.loads(x) for x in (res.record_path.parent / "samples.jsonl").open()]
    assert len(rows) == 8
    assert sum(bool(r["outputs"].get("caption")) for r in rows) == 5
    errs = {r["sample_id"]: r["error"] for r in rows if r.get("error")}
    assert set(errs) == {"truncated.jpg", "empty.jpg", "text.jpg"}
    assert all(e["file"].endswith(sid) and e["reason"] for sid, e in errs.items())
    rec = res.record
    assert rec["num_samples"] == 5 and rec["scored_samples"] == {"caption": 0}
    assert rec["metrics"]["caption"]["cider_d"] == {
        "value": None,
        "ci95": None,
        "absent": "no sample has captions",
    }
    assert "3 sample(s) could not be read" in res.summary() and "metrics absent" in res.summary()
    assert fake_runner.run(cfg).skipped  # complete: a rerun does not redo it
    # partly labelled: the labelled images are scored, the others keep their outputs
    (root / "captions.json").write_text(json.dumps({"im01.jpg": ["bright"], "im02.jpg": ["dark"]}))
    res2 = fake_runner.run(cfg)
    assert not res2.skipped and res2.record["scored_samples"] == {"caption": 2}
    assert res2.record["metrics"]["caption"]["exact_match"]["value"] is not None


def test_semcom_run_exit_status_says_samples_failed(tmp_path, fake_runner):
    from semcom.commands.run import main

    root = _broken_folder(tmp_path / "p", n=2)
    args = [
        "--set",
        "data.dataset=folder",
        "--set",
        f"data.path={root}",
        "--set",
        "edge.method=jpeg",
        "--out",
        str(tmp_path / "r"),
        "-q",
    ]
    assert main(args) == 3
    (root / "truncated.jpg").unlink()
    (root / "empty.jpg").unlink()
    (root / "text.jpg").unlink()
    assert main(args) == 0  # the data changed: a new run, all read


def test_nothing_readable_is_an_error_with_the_rows_kept(tmp_path, fake_runner):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    cfg = load_config(
        None,
        [
            "data.dataset=folder",
            f"data.path={root}",
            "edge.method=jpeg",
            "run.progress=false",
            f"run.out_dir={tmp_path / 'r'}",
        ],
    )
    res = fake_runner.run(cfg)
    assert not res.ok and "no sample could be read" in res.record["error"]["message"]
    rows = [json.loads(x) for x in (res.record_path.parent / "samples.jsonl").open()]
    assert rows[0]["error"]["file"].endswith("a.png")


def test_edge_images_takes_every_image(tmp_path):
    from semcom.commands.edge import _overrides, build_parser

    root = _broken_folder(tmp_path / "p", n=2)
    (root / "sub").mkdir()
    _img(root / "sub" / "x.webp")
    args = build_parser().parse_args(
        ["run", "--cloud", "127.0.0.1:1", "--insecure", "--images", str(root)]
    )
    cfg = load_config(None, _overrides(args))
    assert cfg.data.dataset == "folder" and cfg.data.num_images is None
    assert len(load_samples(cfg.data, "caption")) == 6


def test_edge_questions_file_anywhere(tmp_path):
    from semcom.commands.edge import _overrides, build_parser

    root = _broken_folder(tmp_path / "p", n=2)
    q = tmp_path / "elsewhere.json"
    q.write_text(json.dumps([{"file": "im01.jpg", "question": "what?", "answer": "x"}]))
    args = build_parser().parse_args(
        [
            "run",
            "--cloud",
            "127.0.0.1:1",
            "--insecure",
            "--images",
            str(root),
            "--questions",
            str(q),
        ]
    )
    cfg = load_config(None, _overrides(args))
    assert [s.sample_id for s in load_samples(cfg.data, "vqa")] == ["im01.jpg#q0"]


def _png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose header says w x h (its pixel data is cut short)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path


def test_a_huge_png_is_refused_from_its_header_naming_the_file(tmp_path):
    big = _png_header(tmp_path / "panorama.png", 20000, 10000)  # 200 MP
    with pytest.raises(ImageReadError, match=r"oversized: 20000 x 10000 = 200,000,000") as e:
        read_image(big)
    assert e.value.file.endswith("panorama.png")
    # a limit above Pillow's own bomb limit is honoured: the header passes, the data is cut
    with pytest.raises(ImageReadError, match="truncated|cannot") as e:
        read_image(big, max_pixels=300_000_000)
    assert "oversized" not in e.value.reason
