"""What a task is: its declaration (:class:`TaskSpec`) and the runner base (:class:`Task`).

A task declares, as data, everything that is not code: its name, its prompt template,
its decoding settings, its metrics (and the main one), the sample fields it reads and
which of them every sample must have, and whether it scores sample by sample or needs
the whole set (retrieval ranks a gallery). The code is two calls, ``run_batch`` (per
batch of received tokens) and ``finalize`` (metrics once everything went through).

Prompts, as lmms-eval's ``doc_to_text`` plus its model-specific pre/post prompts: the
task owns the *task-level* prompt (``"{question}"`` for VQA, an instruction for
captioning) and may give one per model family; the model family keeps its own *chat
wrapper* around it (LLaVA's ``"USER: <image>\\n{prompt} ASSISTANT:"``, read from the
model directory). A model directory may record the prompt a model was trained with
(``semcom.json`` ``"prompts": {task: prompt}``; the tiny LLaVA's ``"caption_prompt"``);
that one is used for that model, so a trained model keeps seeing its training prompt.

No torch or numpy at module import: the config check and ``--help`` read specs.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

# Sample fields a task can read, by the name a TaskSpec uses for them.
REFERENCES = {"captions": "captions", "answers": "answers", "questions": "question"}
# Fields a prompt template can name: {question}, {image_id}, {sample_id}.
PROMPT_FIELDS = ("question", "image_id", "sample_id")
SCOPES = ("sample", "set")


@dataclass(frozen=True)
class Generation:
    """Decoding settings of a generative task (deterministic: greedy unless beams > 1).

    ``make_task``'s ``max_new_tokens`` / ``beams`` (the cloud's ``cloud.max_new_tokens``
    / ``cloud.beams``) replace these defaults, except that ``max_new_tokens_limit`` caps
    the length (short answers) and ``fixed_beams`` keeps ``beams`` whatever is asked.
    """

    max_new_tokens: int = 24
    beams: int = 1
    max_new_tokens_limit: int | None = None
    fixed_beams: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.beams < 1:
            raise ValueError(f"max_new_tokens and beams must be >= 1, got {self}")

    def resolve(self, *, max_new_tokens: int | None = None, beams: int | None = None) -> Generation:
        """The settings a run uses when it asks for ``max_new_tokens`` / ``beams``."""
        n = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if self.max_new_tokens_limit is not None:
            n = min(n, self.max_new_tokens_limit)
        b = self.beams if beams is None or self.fixed_beams else int(beams)
        return replace(self, max_new_tokens=n, beams=b)


@dataclass(frozen=True)
class TaskSpec:
    """The declaration of a task (see the module docstring).

    ``output``: the key of the model's output in each row (``caption``, ``answer``;
    ``None`` when the outputs only exist after ``finalize``, as retrieval's recalls).
    ``prompt``: the task-level prompt template; ``{question}``, ``{image_id}`` and
    ``{sample_id}`` are filled from the sample. ``family_prompts``: per model family
    (``blip``, ``llava``) instead of ``prompt``. ``metrics``: the names ``finalize``
    returns (``main_metric`` first in tables and plots). ``references``: the sample
    fields read (``captions``, ``answers``, ``questions``); ``required``: those every
    sample must have. ``scope``: ``sample`` (outputs scored one by one) or ``set``
    (needs every sample before it can score: ranks, galleries). ``options``: the task's
    own keyword options and their defaults (``make_task(..., k_test=4)``).
    ``capability``: the backend capability it calls, one of a backend's ``tasks``
    (``caption``: ``backend.caption``; ``vqa``: ``backend.answer``; ``retrieval``:
    ``image_embed`` / ``text_embed`` / ``itm_scores``); ``make_task`` checks that the
    backend has it (``None``: no check).
    """

    name: str
    title: str = ""
    help: str = ""
    output: str | None = None
    prompt: str = ""
    family_prompts: Mapping[str, str] = field(default_factory=dict)
    generation: Generation | None = None
    metrics: tuple[str, ...] = ()
    main_metric: str = ""
    references: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    scope: str = "sample"
    options: Mapping[str, Any] = field(default_factory=dict)
    capability: str | None = None

    def __post_init__(self):
        bad = [r for r in (*self.references, *self.required) if r not in REFERENCES]
        if bad:
            raise ValueError(
                f"task {self.name}: unknown reference(s) {bad}; use {', '.join(REFERENCES)}"
            )
        if not set(self.required) <= set(self.references):
            raise ValueError(
                f"task {self.name}: required {self.required} must be among "
                f"references {self.references}"
            )
        if self.scope not in SCOPES:
            raise ValueError(f"task {self.name}: scope {self.scope!r}; use one of {SCOPES}")
        if self.scope == "sample" and not self.output:
            raise ValueError(
                f"task {self.name}: a per-sample task names its output (the "
                "row key of the model's output, as 'caption' or 'answer')"
            )
        if self.metrics and self.main_metric not in self.metrics:
            raise ValueError(
                f"task {self.name}: main_metric {self.main_metric!r} is not "
                f"among its metrics {self.metrics}"
            )
        for p in (self.prompt, *self.family_prompts.values()):
            check_prompt(p, self.name)

    @property
    def per_sample(self) -> bool:
        return self.scope == "sample"

    @property
    def per_question(self) -> bool:
        """One sample (and one transmission) per question rather than per image."""
        return "questions" in self.required


def check_prompt(template: str, task: str) -> None:
    """A prompt template may name only :data:`PROMPT_FIELDS` (a ValueError otherwise)."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"task {task}: bad prompt template {template!r}: {exc}") from None
    bad = names - set(PROMPT_FIELDS)
    if bad:
        raise ValueError(
            f"task {task}: prompt template {template!r} names "
            f"{', '.join(sorted(bad))}; it may use {{question}}, {{image_id}}, "
            "{sample_id}"
        )


def prompt_for(spec: TaskSpec, backend, prompt: str | None = None) -> str:
    """The prompt template ``spec`` uses with ``backend``: ``prompt`` if given, else the
    one the model directory records for this task (``backend.prompts``), else the
    task's prompt for the backend's family, else the task's own."""
    if prompt is not None:
        check_prompt(prompt, spec.name)
        return prompt
    recorded = getattr(backend, "prompts", None) or {}
    if spec.name in recorded:
        return str(recorded[spec.name])
    family = getattr(backend, "family", None)
    if family in spec.family_prompts:
        return spec.family_prompts[family]
    return spec.prompt


class Task:
    """Base of task runners: subclasses set :attr:`spec` and implement the two calls.

    >>> # task = make_task("caption", backend, beams=1, max_new_tokens=24)
    >>> # rows = task.run_batch(tokens, mask, samples)     # one dict per sample
    >>> # metrics = task.finalize(rows)                     # {metric: {value, ci95}}

    ``rows`` are the per-sample records (``samples.jsonl``): ``sample_id``, ``image_id``,
    the output (under ``spec.output``), the references and the per-sample scores.
    """

    spec: ClassVar[TaskSpec]

    def __init__(
        self,
        backend,
        *,
        beams: int | None = None,
        max_new_tokens: int | None = None,
        seed: int = 0,
        prompt: str | None = None,
        **options,
    ):
        unknown = set(options) - set(self.spec.options)
        if unknown:
            raise TypeError(
                f"task {self.spec.name} has no option(s) {sorted(unknown)} "
                f"(it takes {', '.join(self.spec.options) or 'none'})"
            )
        self.backend, self.seed = backend, seed
        self.options = {**self.spec.options, **options}
        gen = self.spec.generation
        self.generation = gen.resolve(max_new_tokens=max_new_tokens, beams=beams) if gen else None
        self.template = prompt_for(self.spec, backend, prompt)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def beams(self) -> int:
        return self.generation.beams if self.generation else 1

    @property
    def max_new_tokens(self) -> int:
        return self.generation.max_new_tokens if self.generation else 0

    def prompts(self, samples) -> list[str]:
        """The task-level prompt of each sample (the template with its fields filled)."""
        return [
            self.template.format(
                question=s.question or "", image_id=s.image_id, sample_id=s.sample_id
            )
            for s in samples
        ]

    def check_samples(self, samples) -> None:
        """A ValueError naming the first sample that lacks a required reference."""
        for ref in self.spec.required:
            attr = REFERENCES[ref]
            for s in samples:
                v = getattr(s, attr, None)
                if v is None or (isinstance(v, (list, tuple)) and not v):
                    raise ValueError(
                        f"task {self.name} needs samples with {ref} (sample {s.sample_id} has none)"
                    )

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        """Rows of one batch: ``tokens [B, N, D]``, ``mask [B, N]`` bool, ``samples``.
        ``projected``: tokens are already LM embeddings (learned projectors, LLaVA)."""
        raise NotImplementedError

    def finalize(self, rows: list[dict]) -> dict:
        """``{metric: {"value", "ci95"}}`` over every row; may add per-sample scores to
        ``rows``."""
        raise NotImplementedError

    @classmethod
    def score(cls, samples, outputs: list, *, seed: int = 0) -> tuple[list[dict], dict]:
        """``(per_sample_scores, metrics)`` of ``outputs[i]`` answering ``samples[i]``,
        without a model (the edge scores what a remote cloud answered). Per-sample tasks
        implement it; a whole-set task scores itself in :meth:`finalize`."""
        raise ValueError(
            f"task {cls.spec.name!r} cannot be scored sample by sample (scope "
            f"{cls.spec.scope!r}: the cloud session scores it in finalize)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, generation={self.generation})"
