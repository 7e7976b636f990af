"""The runner's mechanics with fakes: records, rates from real bytes, resume, failures."""

import json

import numpy as np
import pytest

from semcom.commands import runner
from semcom.config import load_config
from semcom.tasks import Task, TaskSpec
from semcom.testing import FakeLink
from semcom.types import Sample


def FakeBackend():
    """The shared fake: 1 + 4 tokens of dim 3, the mean colour of each image quadrant
    (CLS = whole image); its captions start with "bright" / "dark" (CLS mean > 0.5)."""
    from semcom.models.fake import FakeBackend as Fake

    return Fake(encoder="means", grid=2, tasks=("caption",), model_id="fake0001")


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
        # the fake's caption is "<bright|dark> <quadrant> <mean>": score its first word
        per = [
            {"exact_match": float(o.split()[0] == s.captions[0])} for s, o in zip(samples, outputs)
        ]
        acc = sum(p["exact_match"] for p in per) / len(per)
        return per, {"exact_match": {"value": acc, "ci95": [acc, acc]}}

    monkeypatch.setattr(runner, "score_task", score)
    return link


def _cfg(tmp_path, *extra):
    return load_config(
        None,
        [
            f"run.out_dir={tmp_path}",
            "edge.method=jpeg",
            "edge.image.quality=80",
            "run.batch_size=4",
            "run.progress=false",
            *extra,
        ],
    )


def test_run_writes_record_and_samples_with_rates_from_real_bytes(tmp_path, fakes):
    res = runner.run(_cfg(tmp_path, "edge.image.headers=file"))
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
    assert rec["rate"]["bits_setup"] == 0  # standalone files: nothing agreed


def test_shared_headers_count_the_setup_once_and_every_image_byte(tmp_path, fakes):
    """bpp_wire = (every description byte + the stream setup, once) / pixels."""
    from semcom.stages.image import PillowCodec, jpeg_template

    res = runner.run(_cfg(tmp_path))  # edge.image.headers: shared (the default)
    assert res.ok, res.record.get("error")
    rec = res.record
    rows = [json.loads(line) for line in (res.record_path.parent / "samples.jsonl").open()]
    codec = PillowCodec("jpeg", 80, headers="shared", template=jpeg_template(80))
    body = [len(codec.encode(s.image, hw=s.hw).data) for s in _samples()]
    # lean envelope: 1 size bit; the table flag bit; the scan: whole bytes after them
    assert [r["rate"]["wire_bits"] for r in rows] == [8 * b + 0 for b in body]
    setup = rec["rate"]["bits_setup"]
    assert setup > 8 * len(jpeg_template(80))  # the tables are in the setup, sent once
    total = sum(r["rate"]["wire_bits"] for r in rows) + setup
    assert rec["rate"]["bpp_wire"] == pytest.approx(total / (6 * 768))
    assert rec["rate"]["bpp_setup"] == pytest.approx(setup / (6 * 768))
    file_bits = 8 * len(PillowCodec("jpeg", 80).encode(_samples()[0].image).data)
    assert rows[0]["rate"]["wire_bits"] < file_bits


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


class BrightnessTask(Task):
    """A user's task: the first word of the backend's caption, under its own output key."""

    spec = TaskSpec(
        name="brightness",
        output="word",
        metrics=("exact_match",),
        main_metric="exact_match",
        references=("captions",),
        capability="caption",
    )

    def run_batch(self, tokens, mask, samples, *, projected=False):
        caps = self.backend.caption(tokens, mask, prompt=self.template)
        return [{"sample_id": s.sample_id, "word": c.split()[0]} for s, c in zip(samples, caps)]

    def finalize(self, rows):
        return {}


def test_a_users_task_named_in_the_config_runs_through_the_cloud_session(tmp_path, fakes):
    """cloud.tasks names a task by import path; the session runs it like a built-in one."""
    res = runner.run(_cfg(tmp_path, "cloud.tasks=[tests.test_runner:BrightnessTask]"))
    assert res.ok, res.record.get("error")
    assert res.record["metrics"]["tests.test_runner:BrightnessTask"]["exact_match"]["value"] == 1.0
    rows = [json.loads(line) for line in (res.record_path.parent / "samples.jsonl").open()]
    assert {r["outputs"]["tests.test_runner:BrightnessTask"] for r in rows} == {"bright", "dark"}
