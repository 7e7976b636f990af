"""Task runners on the cloud: tokens (+ mask) -> model outputs -> scores and metrics.

Tasks are looked up by name in :mod:`semcom.registry` (kind ``task``). The built-in
ones (``caption``, ``vqa``, ``retrieval``) are listed lazily; a user adds their own by
decorating a :class:`Task` subclass in a module they import, or by naming it in the
config as ``cloud.tasks: [package.module:MyTask]``:

>>> from semcom.registry import register
>>> @register("task", "my-task")
... class MyTask(Task):
...     spec = TaskSpec(name="my-task", output="answer", prompt="{question}",
...                     generation=Generation(max_new_tokens=4), metrics=("accuracy",),
...                     main_metric="accuracy", references=("questions", "answers"),
...                     required=("questions",))
...     def run_batch(self, tokens, mask, samples, *, projected=False): ...
...     def finalize(self, rows): ...
>>> task_spec("my-task").output
'answer'

Every task has the same two calls, so the runner (and ``semcom train tinyworld
--eval-only``) can stream batches through them:

>>> # task = make_task("caption", backend, beams=1, max_new_tokens=24)
>>> # rows = task.run_batch(tokens, mask, samples)     # one dict per sample
>>> # metrics = task.finalize(rows)                     # {metric: {value, ci95}}; rows updated

Importing this package imports no torch and no numpy (config checks read the specs).
"""

from __future__ import annotations

from semcom import registry
from semcom.tasks.base import Generation, Task, TaskSpec, prompt_for

__all__ = [
    "TASKS",
    "CaptionTask",
    "Generation",
    "RetrievalTask",
    "Task",
    "TaskSpec",
    "VQATask",
    "make_task",
    "names",
    "prompt_for",
    "task_class",
    "task_spec",
]
_BUILTIN = {
    "CaptionTask": "semcom.tasks.caption:CaptionTask",
    "RetrievalTask": "semcom.tasks.retrieval:RetrievalTask",
    "VQATask": "semcom.tasks.vqa:VQATask",
}

registry.declare(
    "task",
    {
        "caption": _BUILTIN["CaptionTask"],
        "retrieval": _BUILTIN["RetrievalTask"],
        "vqa": _BUILTIN["VQATask"],
    },
)
TASKS = ("caption", "vqa", "retrieval")  # the built-in tasks


def __getattr__(attr: str):
    """``semcom.tasks.CaptionTask`` etc.: the built-in classes, imported on first use."""
    if attr in _BUILTIN:
        return registry.import_path(_BUILTIN[attr])
    raise AttributeError(f"module 'semcom.tasks' has no attribute {attr!r}")


def names() -> list[str]:
    """The registered task names (built-in and user-registered)."""
    return registry.names("task")


def task_class(name: str) -> type[Task]:
    """The :class:`Task` subclass of a registered name or ``package.module:Class``;
    a :class:`~semcom.errors.ConfigError` on ``cloud.tasks`` naming the known tasks."""
    from semcom.errors import ConfigError

    try:
        cls = registry.get("task", name)
    except ConfigError as exc:
        raise ConfigError("cloud.tasks", exc.message) from None
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, TaskSpec) or not callable(getattr(cls, "run_batch", None)):
        raise ConfigError(
            "cloud.tasks",
            f"task '{name}' ({cls!r}) is not a task: subclass "
            "semcom.tasks.Task, set its spec (a TaskSpec) and implement "
            "run_batch / finalize",
        )
    return cls


def task_spec(name: str) -> TaskSpec:
    """The declaration of task ``name`` (imports its module, not torch)."""
    return task_class(name).spec


def make_task(
    name: str,
    backend,
    *,
    beams: int | None = None,
    max_new_tokens: int | None = None,
    k_test: int | None = None,
    seed: int = 0,
    prompt: str | None = None,
    **options,
) -> Task:
    """The runner of task ``name`` for ``backend`` (checks that the backend supports it).

    ``beams`` / ``max_new_tokens`` override the task's :class:`Generation` defaults (the
    cloud's ``cloud.beams`` / ``cloud.max_new_tokens``; VQA caps the length at 8).
    ``k_test`` and ``options`` go to tasks that declare them (retrieval: ``k_test``,
    ``batch_size``); ``prompt`` replaces the task's prompt template.
    """
    cls = task_class(name)
    spec = cls.spec
    supported = getattr(backend, "tasks", None)
    if spec.capability is not None and supported is not None and spec.capability not in supported:
        from semcom.errors import ConfigError

        what = f"task '{name}'" + (
            f" (needs the model's {spec.capability})" if spec.capability != name else ""
        )
        raise ConfigError(
            "cloud.tasks",
            f"{what} is not supported by the "
            f"{backend.family} model at {backend.path} (it supports "
            f"{', '.join(sorted(supported))})",
        )
    if k_test is not None and "k_test" in spec.options:
        options["k_test"] = k_test
    return cls(
        backend, beams=beams, max_new_tokens=max_new_tokens, seed=seed, prompt=prompt, **options
    )
