"""The docstring examples of the stage contract and of every stage run here, so they
cannot rot; every :class:`~semcom.stage.Stage` documents itself with one."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import semcom.stages
from semcom.stage import Stage

MODULES = [
    "semcom.stage",
    *sorted(m.name for m in pkgutil.walk_packages(semcom.stages.__path__, "semcom.stages.")),
    "semcom.projectors.wire",
]
PACKAGES = {"semcom.stages", "semcom.stages.codec"}


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
    assert res.attempted > 0 or module in PACKAGES, f"{module} has no docstring example"


def _stages() -> dict[str, type]:
    found = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Stage) and cls is not Stage and cls.__module__ == name:
                found[f"{name}.{cls.__qualname__}"] = cls
    return found


def test_every_stage_has_an_example_and_a_name():
    stages = _stages()
    expected = {
        "semcom.stages.envelope.EnvelopeStage",
        "semcom.stages.positions.Positions",
        "semcom.stages.mdc.MDC",
        "semcom.stages.quant.Fp16Quantizer",
        "semcom.stages.quant.ScalarQuantizer",
        "semcom.stages.quant.VQQuantizer",
        "semcom.stages.tokens.TokenWire",
        "semcom.stages.image.PillowCodec",
        "semcom.stages.codec.stage.NeuralCodec",
        "semcom.projectors.wire.ProjectorWire",
    }
    assert expected <= set(stages)
    for qualname, cls in stages.items():
        if inspect.isabstract(cls):
            continue
        assert ">>>" in (cls.__doc__ or ""), f"{qualname} has no example in its docstring"
        # inputs and outputs documented by the stage or by its stage base (the quantisers)
        docs = " ".join(
            b.__doc__ or "" for b in cls.__mro__ if issubclass(b, Stage) and b is not Stage
        )
        assert ":input" in docs and ":output" in docs, qualname
        if "name" in vars(cls):
            assert cls.name, qualname


def test_stage_is_abstract():
    with pytest.raises(TypeError):
        Stage()

    class Half(Stage):
        def write(self, w, x, /):
            return 0

    with pytest.raises(TypeError):
        Half()
