"""The runner's mechanics with fakes: records, rates from real bytes, resume, failures."""

import json
import sys
import types

import numpy as np
import pytest

from semcom import runner
from semcom.config import load_config
from semcom.types import Sample


class FakeBackend:
    model_id = "fake0001"
    num_patches = 4

    def preprocess(self, images):
        import torch

        return torch.tensor(np.stack([im.astype(np.float32) / 255 for im in images]))

    def vision_tokens(self, pixels, **kw):
        # 1 + 4 tokens of dim 3: the mean colour of each image quadrant (CLS = whole image).
        b, h, w, _ = pixels.shape
        q = [pixels[:, :h // 2, :w // 2], pixels[:, :h // 2, w // 2:],
             pixels[:, h // 2:, :w // 2], pixels[:, h // 2:, w // 2:]]
        toks = [pixels.mean((1, 2))] + [x.mean((1, 2)) for x in q]
        import torch

        return types.SimpleNamespace(tokens=torch.stack(toks, 1))


class BrightnessTask:
    """'Captions' an image by its brightness; scores by exact match."""

    def run_batch(self, tokens, mask, samples, projected=False):
        return [{"caption": "bright" if float(t[0].mean()) > 0.5 else "dark"} for t in tokens]


class FakeLink:
    def __init__(self, drop_every=0):
        self.drop_every, self.n = drop_every, 0

    def transmit(self, descriptions, rng):
        from semcom.types import erase

        out, stats = [], []
        for d in descriptions:
            self.n += 1
            lost = self.drop_every and self.n % self.drop_every == 0
            out.append(erase(d) if lost else d)
            stats.append(types.SimpleNamespace(coded_bits=2 * d.bits, channel_uses=d.bits,
                                               airtime_s=1e-3, blocks=1,
                                               block_errors=int(bool(lost)), rounds=1))
        return types.SimpleNamespace(received=out, stats=stats)


def _samples(n=6):
    out = []
    for i in range(n):
        v = 230 if i % 2 else 20
        img = np.full((24, 32, 3), v, np.uint8)
        out.append(Sample(f"s{i}", f"img{i}", img, captions=["bright" if i % 2 else "dark"]))
    return out


@pytest.fixture
def fakes(monkeypatch):
    link = FakeLink()
    monkeypatch.setattr(runner, "get_backend", lambda ref, device: FakeBackend())
    monkeypatch.setattr(runner, "build_link", lambda cfg: link)
    monkeypatch.setattr(runner, "load_samples", lambda cfg, task: _samples())

    def score(task, samples, outputs, seed=0):
        per = [{"exact_match": float(o == s.captions[0])} for s, o in zip(samples, outputs)]
        acc = sum(p["exact_match"] for p in per) / len(per)
        return per, {"exact_match": {"value": acc, "ci95": [acc, acc]}}

    monkeypatch.setattr(runner, "score_task", score)
    mod = types.ModuleType("cloud.tasks")
    mod.make_task = lambda task, backend, **kw: BrightnessTask()
    monkeypatch.setitem(sys.modules, "cloud.tasks", mod)
    return link


def _cfg(tmp_path, *extra):
    return load_config(None, [f"run.out_dir={tmp_path}", "edge.method=jpeg",
                              "edge.image.quality=80", "run.batch_size=4",
                              "run.progress=false", *extra])


def test_run_writes_record_and_samples_with_rates_from_real_bytes(tmp_path, fakes):
    res = runner.run(_cfg(tmp_path))
    assert res.ok and not res.skipped, res.record.get("error")
    rec = json.loads(res.record_path.read_text())
    assert rec["status"] == "ok" and rec["num_samples"] == 6 and rec["label"] == "JPEG"
    assert rec["metrics"]["caption"]["exact_match"]["value"] == 1.0
    rows = [json.loads(line) for line in (res.record_path.parent / "samples.jsonl").open()]
    assert len(rows) == 6
    # bpp_wire: every byte of the description (JPEG file + 4-byte envelope) / (24*32).
    from semcom.stages.image import PillowCodec

    jpeg_bytes = len(PillowCodec("jpeg", 80).encode(_samples()[0].image).data)
    assert rows[0]["rate"]["wire_bits"] == 8 * (jpeg_bytes + 4)
    assert rows[0]["rate"]["header_bits"] == 32
    assert rows[0]["rate"]["bpp_wire"] == pytest.approx(8 * (jpeg_bytes + 4) / 768)
    assert rec["rate"]["cpp"] == pytest.approx(rec["rate"]["bpp_wire"])  # fake: 1 use/bit
    assert rec["provenance"]["git"].keys() >= {"commit", "dirty"}
    assert rec["config"]["edge"]["method"] == "jpeg"


def test_rerun_skips_and_overwrite_redoes(tmp_path, fakes):
    cfg = _cfg(tmp_path)
    first = runner.run(cfg)
    again = runner.run(cfg)
    assert again.skipped and again.record["run_id"] == first.record["run_id"]
    redo = runner.run(cfg, overwrite=True)
    assert not redo.skipped and redo.ok


def test_lost_descriptions_are_concealed_and_counted(tmp_path, monkeypatch, fakes):
    monkeypatch.setattr(fakes, "drop_every", 2)
    monkeypatch.setattr(fakes, "n", 1)  # drops samples 0, 2, 4: the dark ones
    res = runner.run(_cfg(tmp_path))
    assert res.ok
    assert res.record["link"]["erasures"] == 3 and res.record["link"]["descriptions"] == 6
    # Lost images become mid-grey: brightness 128/255 > 0.5 -> "bright" for the dark ones.
    assert res.record["metrics"]["caption"]["exact_match"]["value"] == 0.5


def test_failure_is_recorded_and_redone(tmp_path, monkeypatch, fakes):
    def boom(cfg, task):
        raise RuntimeError("dataset exploded")

    monkeypatch.setattr(runner, "load_samples", boom)
    cfg = _cfg(tmp_path)
    res = runner.run(cfg)
    assert not res.ok and res.record["status"] == "error"
    assert "dataset exploded" in res.record["error"]["message"]
    assert "RuntimeError" in res.record["error"]["traceback"]
    monkeypatch.setattr(runner, "load_samples", lambda cfg, task: _samples())
    res2 = runner.run(cfg)  # an error record does not count as done
    assert res2.ok and not res2.skipped
