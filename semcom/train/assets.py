"""The conventions every ``semcom train`` command follows (model, data, output, device)
and what every trained asset records about how it was made.

- ``--model blip|llava`` and ``--model-path DIR``: the model the asset is trained for
  (default: the embedded tiny model); the asset records its ``model_id``, and loading
  it for another model is an error naming both.
- ``--data NAME|DIR`` (+ ``--data-set KEY=VALUE``, ``--split``): the training data, any
  dataset semcom reads (:func:`semcom.data.add_data_args`); the asset records the data
  section and its content id.
- ``--out DIR``: where the asset is written. Required: the shipped assets
  (``semcom/assets/``, ``semcom/models/tiny/``) are only rewritten with ``--shipped``
  (for maintainers), and ``--out`` pointing into them without it is refused.
- ``--device auto|cpu|cuda`` (:func:`semcom.models.device.resolve_device`).

``trained_on(...)`` is the record each asset keeps (``trained_on`` in its metadata or
training record): model family, path and id, data, command, versions, time.

    p = make_parser(...)
    add_model_args(p); add_data_args(p); add_out_args(p, SHIPPED_DIR, "codebooks")
    add_device_arg(p)
    args = p.parse_args(argv)
    out = output_dir(args, SHIPPED_DIR, "codebooks")          # Path, checked
    device = resolve_device(args.device)
    data = data_config(args, num_images=args.images)
    ...
    meta["trained_on"] = trained_on(backend, data)
"""

from __future__ import annotations

import sys
from pathlib import Path

from semcom.errors import SemcomError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY_MODELS = Path(__file__).resolve().parents[1] / "models" / "tiny"
SHIPPED_ROOTS = (ASSETS, TINY_MODELS)


def add_model_args(p, *, families=("blip", "llava"), default: str | None = "blip") -> None:
    """``--model`` (family) and ``--model-path`` (a save_pretrained directory)."""
    if len(families) > 1:
        p.add_argument(
            "--model",
            choices=list(families),
            default=default,
            required=default is None,
            help=f"model family{f' (default {default})' if default else ''}",
        )
    p.add_argument(
        "--model-path",
        default="",
        metavar="DIR",
        help="the model's directory (save_pretrained; BLIP and LLaVA-1.5 checkpoints, see "
        "docs/models.md); default: the embedded tiny model",
    )


def add_out_args(p, shipped: Path, what: str) -> None:
    """``--out DIR`` (required unless ``--shipped``) and ``--shipped``."""
    p.add_argument(
        "--out",
        default="",
        metavar="DIR",
        help=f"output directory of the {what} (required: the shipped ones in "
        f"{_rel(shipped)} are rewritten only with --shipped)",
    )
    p.add_argument(
        "--shipped",
        action="store_true",
        help=f"maintainers: write into the shipped {_rel(shipped)} (what semcom uses by "
        "default; the committed files change)",
    )


def add_device_arg(p, default: str = "auto") -> None:
    p.add_argument(
        "--device",
        default=default,
        help=f"torch device: auto (cuda when available), cpu, cuda, cuda:N (default {default})",
    )


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path(__file__).resolve().parents[2])) + "/"
    except ValueError:
        return str(path)


def _inside(path: Path, roots) -> bool:
    p = path.expanduser().resolve()
    return any(p == r.resolve() or r.resolve() in p.parents for r in roots)


def output_dir(args, shipped: Path, what: str = "assets") -> Path:
    """The directory a train command writes: ``--out``, or ``shipped`` with
    ``--shipped``; a :class:`~semcom.errors.SemcomError` when neither is given, or when
    ``--out`` lies inside the shipped assets without ``--shipped``."""
    out = str(getattr(args, "out", "") or "")
    if getattr(args, "shipped", False):
        if out and Path(out).expanduser().resolve() != shipped.resolve():
            raise SemcomError(f"--shipped writes into {shipped}; drop --out {out}")
        return shipped
    if not out:
        raise SemcomError(
            f"--out: name the directory for the trained {what} (--out DIR); the shipped ones in "
            f"{_rel(shipped)} are rewritten only with --shipped",
        )
    path = Path(out).expanduser()
    if _inside(path, SHIPPED_ROOTS):
        raise SemcomError(
            f"--out {path} is inside the shipped assets; use --shipped to rewrite them, or "
            "another directory",
        )
    return path


def trained_on(backend=None, data=None, *, command: list[str] | None = None) -> dict:
    """What a trained asset records: ``model`` (family, path, model_id), ``data`` (the
    data section and its content id), ``command``, versions and time."""
    import datetime
    import platform

    out: dict = {}
    if backend is not None:
        out["model"] = {
            "family": getattr(backend, "family", None),
            "path": str(getattr(backend, "path", "")),
            "model_id": getattr(backend, "model_id", None),
        }
    if data is not None:
        from semcom.data.training import describe

        out["data"] = describe(data)
    out["command"] = (
        " ".join(command) if command is not None else " ".join(["semcom", *sys.argv[1:]])
    )
    out["python"] = platform.python_version()
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    out["utc"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def save_weights(directory: Path, name: str, state: dict, metadata: dict, metrics=None) -> Path:
    """Write ``state`` (tensors) as ``directory/name`` (safetensors with the string
    ``metadata``) and, when given, ``metrics`` beside it as
    ``<stem>.train_metrics.json``; the weights file."""
    import json

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    save_file(state, str(path), metadata={k: str(v) for k, v in metadata.items()})
    if metrics is not None:
        text = json.dumps(metrics, indent=2, default=str) + "\n"
        (directory / (Path(name).stem + ".train_metrics.json")).write_text(text)
    return path
