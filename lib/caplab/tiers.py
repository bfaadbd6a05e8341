"""Tiers: one YAML parameter file per notebook per tier, built into the paper's typed parameter set.

    notebooks/<paper>.ipynb
    notebooks/params/<paper>/{smoke,cpu,gpu}.yaml
    caplab.papers.<paper>.Params

Validation happens before anything executes: the file must set every parameter, and an unknown, missing or
mistyped key at any depth is an error naming the file, the dotted path and the allowed keys (`caplab.params`).
The `tier` parameter is set by the runner, not by the file. A notebook without a `caplab.papers` module (the test
fixtures) is checked against its `parameters` cell, top level only.
"""
from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml

from caplab.params import ParameterError, build, load_yaml  # noqa: F401  (ParameterError is re-exported)
from caplab.report.registry import TIERS

RESERVED = ("tier",)          # parameters the runner injects itself

# papermill's inferred type names -> the Python types a YAML value may have for them
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
    "list": (list,), "tuple": (list,), "dict": (dict,),
}




@dataclass(frozen=True)
class Plan:
    """One notebook at one tier, ready to execute: its resolved parameters."""

    notebook: str
    tier: str
    path: Path
    params_file: Path
    params: dict[str, Any]
    typed: Any = None              # the paper's Params, where it has a module in caplab.papers
    shrunk: bool = False           # counts made small by `caplab.shrink` (a check of the pipeline, not a result)


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The notebook's `parameters` cell as papermill reads it: name -> {inferred_type_name, default, help}.
    A name assigned in the cell that papermill could not parse (it skips lines with two `=`) is an error here,
    since papermill would silently never override it."""
    declared = papermill.inspect_notebook(str(path))
    cells = [c for c in nbformat.read(path, as_version=4).cells
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if cells:
        assigned = [t.id for node in ast.parse(cells[0].source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)]
        missed = [name for name in assigned if name not in declared]
        if missed:
            raise ParameterError(f"{path.stem}: papermill cannot parse the parameters {missed} of the parameters "
                                 f"cell (one assignment per line; no '=' inside a comment)")
    return declared


def declared_type(spec: dict[str, Any]) -> str | None:
    """The parameter's type: its annotation if papermill found one, else the type of its literal default."""
    if spec.get("inferred_type_name") not in (None, "", "None"):
        return spec["inferred_type_name"]
    try:
        default = ast.literal_eval(spec["default"])
    except (ValueError, SyntaxError):
        return None                        # an expression papermill cannot evaluate: not checked
    return None if default is None else type(default).__name__


def _type_ok(value: Any, type_name: str | None) -> bool:
    if type_name is None or type_name not in _ACCEPTS:
        return True                        # untyped default (None) or something papermill cannot name
    if isinstance(value, bool) and type_name != "bool":
        return False                       # YAML `yes` is not a number
    return isinstance(value, _ACCEPTS[type_name])


def validate(notebook_path: Path, params: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Check `params` against the notebook's parameters cell; returns them, or raises ParameterError."""
    declared = notebook_parameters(notebook_path)
    name = notebook_path.stem
    if not declared:
        raise ParameterError(f"{name}: the notebook has no cell tagged 'parameters'")
    allowed = sorted(k for k in declared if k not in RESERVED)
    if not isinstance(params, dict):
        raise ParameterError(f"{name}: {source} must be a mapping of parameter names to values, "
                             f"got {type(params).__name__}")
    for key, value in params.items():
        if key in RESERVED:
            raise ParameterError(f"{name}: {source} sets {key!r}, which the runner sets itself")
        if key not in declared:
            raise ParameterError(f"{name}: unknown parameter {key!r} in {source}; allowed: {', '.join(allowed)}")
        type_name = declared_type(declared[key])
        if not _type_ok(value, type_name):
            raise ParameterError(f"{name}: parameter {key!r} in {source} must be {type_name} "
                                 f"(default {declared[key]['default']}), got {type(value).__name__} {value!r}")
    return params


def require_complete(notebook_path: Path, params: dict[str, Any], *, source: str) -> None:
    """A tier file sets every parameter of its notebook: an empty or partial file would silently run the notebook's
    own defaults (the cpu ones) under the tier's name."""
    declared = notebook_parameters(notebook_path)
    unset = sorted(k for k in declared if k not in RESERVED and k not in params)
    if unset:
        raise ParameterError(f"{notebook_path.stem}: {source} {'is empty: it ' if not params else ''}does not set "
                             f"{', '.join(unset)}; a tier file must set every parameter of the notebook")


def params_file(notebooks: Path, notebook: str, tier: str) -> Path:
    return notebooks / "params" / notebook / f"{tier}.yaml"


def load_params(path: Path, notebook: str) -> dict[str, Any]:
    if not path.exists():
        raise ParameterError(f"{notebook}: no parameter file for this tier: {path} is missing")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(f"{notebook}: {path} is not valid YAML: {exc}") from exc
    return {} if data is None else data


def paper_params(notebook: str):
    """The `Params` dataclass of `caplab.papers.<notebook>`, or None where the notebook has no paper module."""
    try:
        module = importlib.import_module(f"caplab.papers.{notebook}")
    except ModuleNotFoundError as exc:
        if exc.name != f"caplab.papers.{notebook}":
            raise
        return None
    return getattr(module, "Params", None)


def plan(notebooks: Path, notebook: str, tier: str, *, shrink: bool = False) -> Plan:
    """Resolve and validate one notebook at one tier (no execution). `shrink`: the tier file's counts made small
    by `caplab.shrink.RULES` (same models, data and design), then validated as any tier file."""
    if tier not in TIERS:
        raise ParameterError(f"unknown tier {tier!r}; allowed: {', '.join(TIERS)}")
    path = notebooks / f"{notebook}.ipynb"
    if not path.exists():
        available = sorted(p.stem for p in notebooks.glob("*.ipynb"))
        raise ParameterError(f"no notebook {path}; available: {', '.join(available) or 'none'}")
    pfile = params_file(notebooks, notebook, tier)
    cls = paper_params(notebook)
    data = load_params(pfile, notebook)
    if shrink:
        from caplab.shrink import shrink as shrunk
        data = shrunk(data)
    if cls is None:
        params = validate(path, data, source=str(pfile))
        require_complete(path, params, source=str(pfile))
        return Plan(notebook, tier, path, pfile, {**params, "tier": tier}, shrunk=shrink)
    if not isinstance(data, dict) or not data:
        data = None if not data else data                  # build() names the problem
    elif any(key in data for key in RESERVED):
        raise ParameterError(f"{_shown(pfile)}: sets {[k for k in RESERVED if k in data]}, which the runner sets")
    typed = build(cls, data if not isinstance(data, dict) else {**data, "tier": tier}, source=_shown(pfile))
    return Plan(notebook, tier, path, pfile, {**data, "tier": tier}, typed, shrunk=shrink)


def _shown(path: Path) -> str:
    """A parameter file's path as a message shows it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def available_notebooks(notebooks: Path) -> list[str]:
    return sorted(p.stem for p in notebooks.glob("*.ipynb"))
