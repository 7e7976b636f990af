"""Train commands for any model and data: --out / --shipped, --data, --device, and what
each trained asset records."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcom.errors import ConfigError, SemcomError
from semcom.train.assets import ASSETS, add_out_args, output_dir


def _out_args(*argv):
    p = argparse.ArgumentParser()
    add_out_args(p, ASSETS / "codecs", "codecs")
    return p.parse_args(list(argv))


def test_out_is_required_and_shipped_assets_are_protected(tmp_path):
    with pytest.raises(SemcomError, match="--shipped"):
        output_dir(_out_args(), ASSETS, "codecs")
    with pytest.raises(SemcomError, match="inside the shipped assets"):
        output_dir(_out_args("--out", str(ASSETS / "codecs")), ASSETS, "codecs")
    with pytest.raises(SemcomError, match="inside the shipped assets"):
        output_dir(_out_args("--out", str(ASSETS.parent / "models" / "tiny" / "x")), ASSETS)
    assert output_dir(_out_args("--shipped"), ASSETS) == ASSETS
    assert output_dir(_out_args("--out", str(tmp_path)), ASSETS) == tmp_path


def test_every_train_command_refuses_to_overwrite_the_shipped_assets(capsys):
    from semcom.commands.cli import main

    for cmd in (
        ["codec", "--arch", "factorized", "--steps", "1"],
        ["neck", "--steps", "1"],
        ["projector", "--type", "tokenpacker", "--scale", "4", "--steps", "1"],
        ["tinyworld", "--model", "blip", "--steps", "1"],
        ["codebook", "--model", "llava", "--bits", "6"],
    ):
        assert main(["train", *cmd]) == 2, cmd
        assert "--out" in capsys.readouterr().err


def test_data_arguments_name_any_dataset(tmp_path):
    from semcom.data.training import add_data_args, data_config

    p = argparse.ArgumentParser()
    add_data_args(p)
    cfg = data_config(p.parse_args([]), num_images=7)
    assert (cfg.dataset, cfg.split, cfg.num_images) == ("tinyworld", "train", 7)
    cfg = data_config(p.parse_args(["--data", str(tmp_path)]))
    assert cfg.dataset == "folder" and cfg.path == str(tmp_path.resolve())
    cfg = data_config(
        p.parse_args(["--data", "coco", "--data-set", "annotations=a.json", "--split", "val"])
    )
    assert (cfg.dataset, cfg.annotations, cfg.split) == ("coco", "a.json", "val")
    with pytest.raises(ConfigError, match="neither a dataset"):
        data_config(p.parse_args(["--data", str(tmp_path / "missing")]))
    with pytest.raises(ConfigError, match="data.annotaions"):
        data_config(p.parse_args(["--data", "coco", "--data-set", "annotaions=x"]))


# ------------------------------------------------------------------------------ devices


def test_device_selection(monkeypatch):
    import torch

    from semcom.config import load_config
    from semcom.models.device import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert load_config(None, []).run.device == "auto"
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        assert resolve_device("auto") == "cuda"
        return
    assert resolve_device("auto") == "cpu"
    assert load_config(None, []).run.torch_device() == "cpu"
    with pytest.raises(ConfigError, match=r"run.device.*'cuda' asked for, but .*use cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("cuda:0", key="--device")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_backends_load_on_the_resolved_device(monkeypatch):
    import torch

    import semcom.models as M
    from semcom.config.model import ModelRef

    be = M.load_backend(ModelRef("blip"), device="auto")
    assert be.device == "cpu" and next(be.cap.parameters()).device.type == "cpu"
    seen = []

    class Probe:
        def __init__(self, path, device):
            seen.append(device)

    import semcom.models.blip

    monkeypatch.setattr(semcom.models.blip, "BlipBackend", Probe)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    M.load_backend(ModelRef("blip"), device="auto")
    assert seen == ["cuda"]  # a user with a GPU gets it


def test_run_with_cuda_and_no_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    from semcom.commands.run import main

    rc = main(["--set", "run.device=cuda", "--out", str(tmp_path), "-q"])
    assert rc == 1  # the run's record holds the error
    out = capsys.readouterr().out
    assert "run.device" in out and "'cuda' asked for" in out


# --------------------------------------------------------------- trainers on any data


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    r = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(r.integers(0, 255, (50 + i, 70, 3), np.uint8)).save(root / f"p{i}.jpg")
    (root / "broken.jpg").write_bytes(b"no")
    return root


def test_codec_trains_on_a_folder_and_records_its_data(photos, tmp_path):
    from semcom.commands.cli import main
    from semcom.stages.codec.weights import find_spec, load_codec

    out = tmp_path / "w"
    argv = ["train", "codec", "--arch", "factorized", "--steps", "2", "--batch", "2"]
    argv += ["--train-images", "4", "--eval-images", "2", "--data", str(photos), "--crop", "32"]
    assert main([*argv, "--out", str(out)]) == 2  # --size is needed for real images
    assert main([*argv, "--size", "64", "--out", str(out), "--device", "cpu"]) == 0
    spec = find_spec("factorized", weights=str(out))
    data = spec.meta["trained_on"]["data"]
    assert data["dataset"] == "folder" and len(data["fingerprint"]) == 16
    assert spec.meta["eval"][0]["images"] == 2  # held out after the 4 training images
    assert load_codec("factorized", 1, weights=str(out)).encode(np.zeros((64, 64, 3), np.uint8))


def test_neck_trains_on_a_folder_for_the_model_given(photos, tmp_path):
    from semcom.commands.cli import main
    from semcom.config.model import ModelRef
    from semcom.models import load_backend
    from semcom.neck import find_spec

    out = tmp_path / "w"
    rc = main(
        ["train", "neck", "--model", "blip", "--setting", "d1", "--steps", "2", "--batch", "2"]
        + ["--train-images", "4", "--eval-images", "2", "--data", str(photos)]
        + ["--out", str(out), "--device", "auto"]
    )
    assert rc == 0
    spec = find_spec("blip", "d1", 1, "mean-scale", str(out))
    be = load_backend(ModelRef("blip"))
    rec = spec.meta["trained_on"]
    assert rec["model"]["model_id"] == spec.model_id == be.model_id
    assert rec["data"]["dataset"] == "folder" and spec.scale == 2
    metrics = json.loads(next((out / "necks").glob("*.train_metrics.json")).read_text())
    assert metrics["n_train_images"] == 4 and metrics["device"] == "cpu"


def test_codebooks_train_on_a_folder_without_questions(photos, tmp_path):
    from semcom.commands.cli import main
    from semcom.stages.codebook import Codebook
    from semcom.stages.prior import TokenPrior

    out = tmp_path / "cb"
    argv = ["train", "codebook", "--model", "llava", "--bits", "4", "--iters", "2"]
    assert main([*argv, "--data", str(photos), "--out", str(out), "--device", "cpu"]) == 0
    cb = Codebook.load(out / "llava-k4-l2.npz")  # the broken file skipped, 7 images read
    assert cb.meta["trained_on"]["data"]["dataset"] == "folder"
    assert cb.meta["selection"]["guidance"] == "caption"  # no questions: the prompt guides
    assert cb.meta["train_images"] == 7
    assert TokenPrior.load(out / "llava-prior.npz").hash[:16] == cb.meta["prior"]


def test_projector_trains_on_question_files(photos, tmp_path):
    from semcom.config import load_config
    from semcom.train.projector import train_projector

    qs = [
        {"file": f"p{i}.jpg", "question": "is it noisy?", "answers": ["yes", "yes", "no"]}
        for i in range(7)
    ] + [{"file": "broken.jpg", "question": "what?", "answer": "x"}]
    (photos / "questions.json").write_text(json.dumps(qs))
    data = load_config(None, ["data.dataset=folder", f"data.path={photos}"]).data
    rec = train_projector(
        "tokenpacker",
        4,
        out=tmp_path / "p",
        steps=2,
        batch_size=2,
        train_images=8,
        calib_images=4,
        layers=(1, 2),
        heads=2,
        progress=False,
        data=data,
        time_limit=60,
    )
    assert rec["steps"] == 2 and rec["train_images"] == 6  # 8 questions, 2 validate
    assert rec["meta"]["train"]["trained_on"]["data"]["dataset"] == "folder"
    assert np.isfinite(rec["val_loss"])
