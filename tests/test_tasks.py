"""semcom.tasks: the task runners' bookkeeping, ranking and metrics, on the fake backend."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from semcom.tasks import make_task  # noqa: E402
from semcom.types import Sample  # noqa: E402


def FakeBackend(captions, **kw):
    """The shared fake in vocabulary mode: token value ``tokens[i, j, 0]`` = k means
    caption k; the caption is that of token 0; ITC prefers the caption of token 0, ITM
    that of token 1; answers are yes / no by the parity of the question's length."""
    from semcom.models.fake import FakeBackend as Fake

    return Fake(captions=captions, **kw)


def _samples(n, **kw):
    return [
        Sample(f"s{i}", f"i{i}", np.zeros((4, 4, 3), np.uint8), [f"cap {i}"], **kw)
        for i in range(n)
    ]


def test_caption_task_rows_and_metrics():
    caps = [f"cap {i}" for i in range(6)]
    be = FakeBackend(caps)
    task = make_task("caption", be, beams=2, max_new_tokens=5)
    tokens = torch.zeros(6, 3, 2)
    tokens[:, 0, 0] = torch.tensor([0, 1, 2, 3, 0, 0])  # images 4, 5 say "cap 0"
    mask = torch.ones(6, 3, dtype=torch.bool)
    rows = task.run_batch(tokens[:3], mask[:3], _samples(6)[:3])
    rows += task.run_batch(tokens[3:], mask[3:], _samples(6)[3:])
    m = task.finalize(rows)
    assert [r["exact_match"] for r in rows] == [100.0] * 4 + [0.0] * 2
    assert m["exact_match"]["value"] == pytest.approx(400 / 6)
    assert "cider_d" in rows[0] and rows[0]["cider_d"] > rows[5]["cider_d"]
    assert set(m) == {"cider_d", "bleu_4", "rouge_l", "exact_match"}


def test_vqa_task():
    be = FakeBackend([])
    task = make_task("vqa", be)
    ss = _samples(3, question="is it ab?", answers=["yes"])  # odd length: the fake says yes
    ss[2].answers = ["no"]
    for s, t in zip(ss, ["exists", "exists", "count"]):
        s.meta["qtype"] = t
    rows = task.run_batch(torch.zeros(3, 2, 2), torch.ones(3, 2, dtype=torch.bool), ss)
    m = task.finalize(rows)
    assert [r["accuracy"] for r in rows] == [100.0, 100.0, 0.0]
    assert m["accuracy"]["value"] == pytest.approx(200 / 3)
    assert m["accuracy/count"]["value"] == 0.0


def test_retrieval_task_itc_then_itm_rerank():
    n = 30
    caps = [f"cap {i}" for i in range(n)]
    be = FakeBackend(caps)
    tokens = torch.zeros(n, 2, 2)
    tokens[:, 0, 0] = torch.arange(n).float()  # ITC: right caption
    tokens[:, 1, 0] = torch.tensor([(i + 1) % n for i in range(n)]).float()  # ITM: wrong one
    mask = torch.ones(n, 2, dtype=torch.bool)
    ss = _samples(n)
    # k_test = 1: ITM only re-scores ITC's top-1 -> ranking stays right
    task = make_task("retrieval", be, k_test=1)
    rows = task.run_batch(tokens, mask, ss)
    m = task.finalize(rows)
    assert m["txt_r1"]["value"] == 100.0 and m["img_r1"]["value"] == 100.0
    assert rows[3]["txt_r1"] == 100.0 and rows[3]["img_r1"] == 100.0
    # k_test = 16: the ITM favourite is ITC's second choice, inside the top-k, and wins
    task = make_task("retrieval", be, k_test=16)
    m = task.finalize(task.run_batch(tokens, mask, ss))
    assert m["txt_r1"]["value"] == 0.0 and m["txt_r5"]["value"] == 100.0
    assert m["img_r1"]["value"] == 0.0 and m["img_r5"]["value"] == 100.0
    # identical image embeddings (zero tokens): chance level, not 100 %
    task = make_task("retrieval", be, k_test=16)
    m = task.finalize(task.run_batch(torch.zeros(n, 2, 2), mask, ss))
    assert m["img_r1"]["value"] < 10.0


def test_make_task_checks_support():
    from semcom.errors import ConfigError

    be = FakeBackend([], tasks=("caption",))
    with pytest.raises(ConfigError, match="retrieval"):
        make_task("retrieval", be)
    with pytest.raises(ValueError):
        make_task("detection", be)


# ----------------------------------------------------------------------- registry and specs

from semcom.registry import register  # noqa: E402
from semcom.tasks import Generation, Task, TaskSpec  # noqa: E402


@register("task", "test-echo")
class EchoTask(Task):
    """A user's task: answers a templated prompt; scored by exact match on the answers."""

    spec = TaskSpec(
        name="test-echo",
        output="answer",
        prompt="say it: {question}",
        generation=Generation(max_new_tokens=3),
        metrics=("hits",),
        main_metric="hits",
        references=("questions", "answers"),
        required=("questions",),
        capability="vqa",
        options={"shout": False},
    )

    def run_batch(self, tokens, mask, samples, *, projected=False):
        self.check_samples(samples)
        outs = self.backend.answer(
            tokens,
            mask,
            self.prompts(samples),
            max_new_tokens=self.max_new_tokens,
            beams=self.beams,
        )
        if self.options["shout"]:
            outs = [o.upper() for o in outs]
        return [
            {"sample_id": s.sample_id, "answer": o, "hit": o in (s.answers or [])}
            for s, o in zip(samples, outs)
        ]

    def finalize(self, rows):
        v = 100.0 * sum(r["hit"] for r in rows) / max(1, len(rows))
        return {"hits": {"value": v, "ci95": [v, v]}}

    @classmethod
    def score(cls, samples, outputs, *, seed=0):
        per = [{"hits": 100.0 * (o in (s.answers or []))} for s, o in zip(samples, outputs)]
        v = sum(p["hits"] for p in per) / max(1, len(per))
        return per, {"hits": {"value": v, "ci95": [v, v]}}


def test_score_task_dispatches_to_the_task_and_refuses_set_tasks():
    from semcom.metrics import score_task

    samples = [Sample(f"s{i}", f"i{i}", None, ["c"], "q?", ["yes"]) for i in range(4)]
    per, metrics = score_task("test-echo", samples, ["yes", "no", "yes", "yes"])
    assert [p["hits"] for p in per] == [100.0, 0.0, 100.0, 100.0]
    assert metrics["hits"]["value"] == 75.0
    per, metrics = score_task("vqa", samples, ["yes", "no", "yes", "yes"])
    assert metrics["accuracy"]["value"] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="retrieval"):
        score_task("retrieval", samples, [None] * 4)


def test_builtin_specs_declare_prompt_generation_metrics_references():
    from semcom.tasks import TASKS, names, task_spec

    assert set(TASKS) <= set(names())
    cap, vqa, ret = (task_spec(t) for t in ("caption", "vqa", "retrieval"))
    assert (cap.output, cap.main_metric, cap.references, cap.per_sample) == (
        "caption",
        "cider_d",
        ("captions",),
        True,
    )
    assert cap.generation == Generation(max_new_tokens=24, beams=1)
    assert vqa.prompt == "{question}" and vqa.per_question and vqa.main_metric == "accuracy"
    assert not ret.per_sample and ret.output is None and ret.options["k_test"] == 16
    assert ret.main_metric in ret.metrics and not cap.per_question


def test_prompts_come_from_the_task_with_family_and_model_overrides():
    """Golden prompts: the tiny LLaVA is trained with exactly these task-level prompts."""
    from semcom.tasks import prompt_for, task_spec

    cap = task_spec("caption")
    assert prompt_for(cap, FakeBackend(None, family="llava")) == "describe the image."
    assert prompt_for(cap, FakeBackend(None, family="blip")) == ""  # BLIP: no prefix
    recorded = FakeBackend(None, family="llava", prompts={"caption": "what is this?"})
    assert prompt_for(cap, recorded) == "what is this?"
    assert prompt_for(cap, recorded, "a picture of") == "a picture of"
    # the prompt reaches the backend, with the task's decoding settings
    be = FakeBackend(None, family="llava")
    make_task("caption", be, beams=2, max_new_tokens=5).run_batch(
        torch.zeros(2, 5, 3), None, _samples(2)
    )
    assert be.last_call == ("caption", "describe the image.", 2, 5)
    ss = _samples(2, question="how many?", answers=["2"])
    make_task("vqa", be, max_new_tokens=24, beams=3).run_batch(torch.zeros(2, 5, 3), None, ss)
    assert be.last_call == ("answer", ["how many?", "how many?"], 1, 8)  # capped, greedy


def test_generation_resolve_and_spec_checks():
    g = Generation(max_new_tokens=8, max_new_tokens_limit=8, fixed_beams=True)
    assert g.resolve(max_new_tokens=4, beams=5) == Generation(4, 1, 8, True)
    assert Generation().resolve(max_new_tokens=40, beams=2).max_new_tokens == 40
    with pytest.raises(ValueError, match="main_metric"):
        TaskSpec(name="x", output="y", metrics=("a",), main_metric="b")
    with pytest.raises(ValueError, match="caption"):
        TaskSpec(name="x", output="y", prompt="{caption}")
    with pytest.raises(ValueError, match="output"):
        TaskSpec(name="x")
    with pytest.raises(ValueError, match="required"):
        TaskSpec(name="x", output="y", required=("answers",))


def test_user_task_by_registered_name_and_by_import_path():
    be = FakeBackend(None, family="llava", tasks=("vqa", "caption"))
    ss = _samples(2, question="ab", answers=["no"])  # "say it: ab": 10 chars -> no
    for name in ("test-echo", "tests.test_tasks:EchoTask"):
        task = make_task(name, be, max_new_tokens=7)
        rows = task.run_batch(torch.zeros(2, 5, 3), None, ss)
        assert be.last_call == ("answer", ["say it: ab"] * 2, 1, 7)
        assert [r["answer"] for r in rows] == ["no", "no"]
        assert task.finalize(rows) == {"hits": {"value": 100.0, "ci95": [100.0, 100.0]}}
    shout = make_task("test-echo", be, shout=True, k_test=3)  # k_test: not this task's
    assert shout.run_batch(torch.zeros(1, 5, 3), None, ss[:1])[0]["answer"] == "NO"
    with pytest.raises(TypeError, match="shout"):
        make_task("test-echo", be, loud=True)
    with pytest.raises(ValueError, match="needs samples with questions"):
        make_task("test-echo", be).run_batch(torch.zeros(1, 5, 3), None, _samples(1))
    from semcom.errors import ConfigError

    with pytest.raises(ConfigError, match="vqa"):  # BLIP has no answer()
        make_task("test-echo", FakeBackend(None, tasks=("caption", "retrieval")))
    with pytest.raises(ConfigError, match="not a task"):
        make_task("semcom.tasks.base:TaskSpec", be)


def test_unknown_task_names_the_known_ones():
    from semcom.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        make_task("captoin", FakeBackend([]))
    assert e.value.key == "cloud.tasks"
    assert "did you mean 'caption'" in e.value.message
    assert "caption, retrieval" in e.value.message and "test-echo" in e.value.message


def test_config_accepts_registered_names_and_import_paths():
    from semcom.config import load_config
    from semcom.errors import ConfigError

    cfg = load_config(None, ["cloud.tasks=[vqa, test-echo, tests.test_tasks:EchoTask]"])
    assert cfg.cloud.tasks == ("vqa", "test-echo", "tests.test_tasks:EchoTask")
    with pytest.raises(ConfigError) as e:
        load_config(None, ["cloud.tasks=[caption, detection]"])
    assert e.value.key == "cloud.tasks"
    assert "unknown task 'detection'" in str(e.value)
    assert "caption, retrieval" in str(e.value) and "vqa" in str(e.value)
