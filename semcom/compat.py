"""Import shims for optional third-party packages.

compressai 1.2.8 is installed with ``--no-deps`` (it pins ``numpy<2``, which conflicts
with sionna). At import time it unconditionally imports ``torchvision.transforms`` and
``torch_geometric`` (only to fill a registry of data-augmentation transforms and to
declare point-cloud transforms) and ``pandas`` (a point-cloud dataset's CSV reader),
and none of them is installed here (PyPI's torchvision does
not install beside our torch). None of the image codecs, entropy models or entropy
coders use them.

:func:`import_compressai` installs minimal stand-in modules for exactly the names
compressai touches at import time, and only for packages that are genuinely absent
(a real torchvision / torch_geometric is always preferred), then imports compressai.
Everything in semcom imports compressai through it:

>>> from semcom.compat import import_compressai
>>> compressai = import_compressai()            # doctest: +SKIP
>>> compressai.zoo.bmshj2018_factorized(quality=1)  # doctest: +SKIP

The stand-ins are marked (``module.__semcom_stub__ = True``) and raise a clear error if
anything tries to *use* them (e.g. instantiating a point-cloud transform).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

STUB_ATTR = "__semcom_stub__"

# module -> the attributes compressai reads from it at import time
_TORCHVISION = {
    "torchvision": (),
    "torchvision.transforms": (),
}
_TORCH_GEOMETRIC = {
    "torch_geometric": (),
    "torch_geometric.transforms": ("BaseTransform", "Center"),
    "torch_geometric.data": ("Data",),
    "torch_geometric.data.datapipes": ("functional_transform",),
}
# compressai.datasets.pointcloud.shapenet does ``import pandas as pd`` (used only to read
# ShapeNet CSV files): a bare module suffices.
_PANDAS = {
    "pandas": (),
}


class StubUseError(ImportError):
    """A compressai feature needed a package that is only stubbed here."""


def _absent(name: str) -> bool:
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _stub_class(module: str, name: str) -> type:
    def __init__(self, *args, **kwargs):
        raise StubUseError(
            f"{module}.{name} is a stand-in installed by semcom.compat "
            f"({module.split('.')[0]} is not installed); this compressai "
            "feature (point clouds / torchvision transforms) is unavailable"
        )

    return type(name, (), {"__init__": __init__, "__module__": module, STUB_ATTR: True})


def _functional_transform(name: str):
    """torch_geometric's class decorator: a no-op here (the class is only declared)."""

    def deco(cls):
        return cls

    return deco


def _make_module(name: str, attrs: tuple[str, ...]) -> types.ModuleType:
    mod = types.ModuleType(name, f"semcom.compat stand-in for {name} (not installed)")
    mod.__path__ = []  # a package, so submodules can be attached
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    setattr(mod, STUB_ATTR, True)
    for attr in attrs:
        if attr == "functional_transform":
            mod.functional_transform = _functional_transform
        else:
            setattr(mod, attr, _stub_class(name, attr))
    return mod


def _install(modules: dict[str, tuple[str, ...]]) -> list[str]:
    root = next(iter(modules)).split(".")[0]
    if not _absent(root):
        return []
    installed = []
    for name, attrs in modules.items():
        mod = _make_module(name, attrs)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, mod)
        installed.append(name)
    return installed


def install_stubs() -> list[str]:
    """Install the stand-ins that are needed; returns the module names installed."""
    return _install(_TORCHVISION) + _install(_TORCH_GEOMETRIC) + _install(_PANDAS)


def is_stub(module: types.ModuleType) -> bool:
    return bool(getattr(module, STUB_ATTR, False))


def import_compressai():
    """``import compressai`` (and ``compressai.zoo``), with stand-ins for absent packages.

    The stand-ins live in ``sys.modules`` only while compressai imports: afterwards they
    are removed again, so other libraries probing for torchvision or pandas (transformers,
    torch._dynamo) still see them as absent. compressai's modules keep their references.
    """
    if "compressai" in sys.modules and hasattr(sys.modules["compressai"], "zoo"):
        return sys.modules["compressai"]
    installed = install_stubs()
    try:
        compressai = importlib.import_module("compressai")
        importlib.import_module("compressai.zoo")
    finally:
        for name in installed:
            if is_stub(sys.modules.get(name)):
                del sys.modules[name]
    return compressai
