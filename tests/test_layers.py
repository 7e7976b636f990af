"""The layering contract in pyproject.toml covers every module of the core."""

import pkgutil
import tomllib
from pathlib import Path

import semcom

ROOT = Path(__file__).resolve().parents[1]


def _contract(name: str) -> dict:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in cfg["contracts"] if c["name"] == name)


def test_the_core_contract_lists_every_module_of_the_core():
    listed = set(_contract("the core imports no library and no command")["source_modules"])
    present = {f"semcom.{m.name}" for m in pkgutil.iter_modules(semcom.__path__)}
    application = {"semcom.commands", "semcom.__main__"}
    assert present - application - listed == set(), "add new core modules to the contract"
    assert listed - present == set(), "the contract names modules that do not exist"
