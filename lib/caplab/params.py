"""Typed parameters, checked whole before anything runs.

Every paper has one parameter set, a dataclass `Params` in `caplab.papers.<paper>`; its fields carry types, and a
nested setting is typed by a schema: the fields of a settings dataclass (`Fields(SFTSettings)`), one schema per
`kind` (`Kinds`), or the keyword arguments of the function that consumes it (`Signature`). `build` checks plain
data (a tier's YAML file, a notebook's globals) against it at any depth: an unknown, missing or mistyped key is a
`ParameterError` naming the source, the dotted path and the allowed keys.

Values stay the plain data they were given (dicts and lists), so the library receives exactly what the file said
and cache keys do not depend on how parameters are checked.

    params = build(budget.Params, yaml_data, source="notebooks/params/budget/gpu.yaml")
    seeds(params)                  # every seed at any depth: {"seed": 0, "model.seed": 0, "pretrain.seed": 0, ...}

This module imports nothing from caplab: every layer may use it (`strict`, the one strict-keys helper).
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers
import re
import types
import typing
from typing import Any, Annotated, Callable, Literal, Union

import yaml


class ParameterError(ValueError):
    """Parameters that do not fit their schema; raised before any work."""


def _where(source: str, path: str) -> str:
    return f"{source}: {path}" if path else source


def _fail(source: str, path: str, message: str):
    raise ParameterError(f"{_where(source, path)}: {message}")


def _join(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


# -- schemas ---------------------------------------------------------------------------------------------------
class Schema:
    """Checks one nested value; `check` raises ParameterError naming the source and dotted path."""

    def check(self, value: Any, source: str, path: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Fields(Schema):
    """A mapping whose keys are the fields of a dataclass (or `name -> type` pairs), each value of its type.

    `partial`: any subset of the keys may be given (overrides of a settings dataclass's defaults); otherwise the
    fields without a default are required. `construct`: also build the dataclass from the value (defaults filling
    the rest), so that its own range checks (`__post_init__`) run now, before any work."""

    def __init__(self, cls_or_fields, *, partial: bool = True, construct: bool = True, name: str | None = None,
                 required: tuple[str, ...] = ()):
        if isinstance(cls_or_fields, dict):
            self.cls, self.types = None, dict(cls_or_fields)
            self.required = tuple(required)
        else:
            self.cls = cls_or_fields
            hints = typing.get_type_hints(cls_or_fields, include_extras=True)
            fields = [f for f in dataclasses.fields(cls_or_fields) if f.init]
            self.types = {f.name: hints.get(f.name, Any) for f in fields}
            self.required = tuple(f.name for f in fields if f.default is dataclasses.MISSING
                                  and f.default_factory is dataclasses.MISSING) + tuple(required)
        self.partial, self.construct = partial, construct and self.cls is not None
        self.name = name or (self.cls.__name__ if self.cls is not None else "mapping")

    def describe(self) -> str:
        return f"{self.name} keys: {', '.join(self.types)}"

    def check(self, value, source, path):
        if not isinstance(value, dict):
            _fail(source, path, f"must be a mapping of {self.name} keys ({', '.join(self.types)}), "
                                f"got {type(value).__name__} {value!r}")
        unknown = [k for k in value if k not in self.types]
        if unknown:
            _fail(source, _join(path, unknown[0]), f"unknown key{'s' if len(unknown) > 1 else ''} "
                                                   f"{', '.join(map(repr, unknown))} of {self.name}; allowed: "
                                                   f"{', '.join(self.types)}")
        if not self.partial:
            missing = [k for k in self.required if k not in value]
            if missing:
                _fail(source, path, f"missing {', '.join(map(repr, missing))} ({self.name} needs them)")
        for key, item in value.items():
            check(item, self.types[key], source, _join(path, key))
        if self.construct:
            try:
                self.cls(**value)
            except (TypeError, ValueError) as exc:
                _fail(source, path, f"{self.name}: {exc}")


class Kinds(Schema):
    """A mapping with a `kind` key that selects the schema of the rest (task specs, family specs, ...)."""

    def __init__(self, kinds: dict[str, Schema], *, name: str = "spec", key: str = "kind"):
        self.kinds, self.name, self.key = kinds, name, key

    def describe(self) -> str:
        return f"{self.name} with '{self.key}' in {', '.join(self.kinds)}"

    def check(self, value, source, path):
        if not isinstance(value, dict):
            _fail(source, path, f"must be a {self.name} mapping with '{self.key}', got {type(value).__name__}")
        kind = value.get(self.key)
        if kind not in self.kinds:
            _fail(source, _join(path, self.key), f"{self.name} {self.key} {kind!r} is not one of "
                                                 f"{', '.join(self.kinds)}")
        rest = {k: v for k, v in value.items() if k != self.key}
        self.kinds[kind].check(rest, source, path)


class Signature(Fields):
    """The keyword arguments of a function (names, annotated types, which have no default): the spec of
    `{"kind": "zipf_language", ...}` is the signature of `data.zipf_language`, so the two never drift apart."""

    def __init__(self, func: Callable, *, exclude: tuple[str, ...] = (), extra: dict[str, Any] | None = None,
                 name: str | None = None, partial: bool = False):
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = [p for p in sig.parameters.values() if p.name not in exclude
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        types_ = {p.name: hints.get(p.name, Any) for p in params}
        types_.update(extra or {})
        required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
        super().__init__(types_, partial=partial, construct=False, name=name or func.__name__, required=required)


class Either(Schema):
    """The first alternative whose `when(value)` is true (e.g. a model spec with `pretrained`, `path`, or a
    tiny shape)."""

    def __init__(self, *alternatives: tuple[Callable[[Any], bool], Schema], name: str = "spec"):
        self.alternatives, self.name = alternatives, name

    def check(self, value, source, path):
        for when, schema in self.alternatives:
            if when(value):
                return schema.check(value, source, path)
        _fail(source, path, f"is not a {self.name}: {value!r}")


class Lazy(Schema):
    """A schema made only when a value needs it (say, the fields of a class from a heavy import)."""

    def __init__(self, make: Callable[[], Schema]):
        self.make, self._schema = make, None

    def check(self, value, source, path):
        if self._schema is None:
            self._schema = self.make()
        self._schema.check(value, source, path)


class Each(Schema):
    """A check of a value's content beyond its type (`Annotated[int, Each(lambda v: v >= 1, ">= 1")]`)."""

    def __init__(self, ok: Callable[[Any], bool], what: str):
        self.ok, self.what = ok, what

    def check(self, value, source, path):
        if not self.ok(value):
            _fail(source, path, f"must be {self.what}, got {value!r}")


def positive(tp):
    """`tp`, and greater than 0."""
    return Annotated[tp, Each(lambda v: v > 0, "> 0")]


def non_empty(tp):
    """A list or mapping that has at least one item."""
    return Annotated[tp, Each(lambda v: len(v) > 0, "non-empty")]


# -- types -----------------------------------------------------------------------------------------------------
_NAMES = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "mapping"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def check(value: Any, tp: Any, source: str, path: str) -> None:
    """Check one value against a type hint (Annotated with a Schema, unions, literals, lists, tuples, mappings,
    dataclasses, int/float/str/bool); raise ParameterError at the first mismatch."""
    if tp is Any:
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        check(value, args[0], source, path)
        for meta in args[1:]:
            if isinstance(meta, Schema):
                meta.check(value, source, path)
        return
    if origin in (Union, types.UnionType):
        errors = []
        for alt in args:
            try:
                return check(value, alt, source, path)
            except ParameterError as exc:
                errors.append(exc)
        if len([a for a in args if a is not type(None)]) == 1 and value is not None:
            raise errors[0]
        _fail(source, path, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            _fail(source, path, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            _fail(source, path, f"must be a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                _fail(source, path, f"must be a list of {len(args)} items, got {len(value)}")
            for i, (item, t) in enumerate(zip(value, args)):
                check(item, t, source, _join(path, i))
            return
        for i, item in enumerate(value):
            check(item, args[0] if args else Any, source, _join(path, i))
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            _fail(source, path, f"must be a mapping, got {type(value).__name__} {value!r}")
        if args:
            for key, item in value.items():
                check(item, args[1], source, _join(path, key))
        return
    if dataclasses.is_dataclass(tp):
        return Fields(tp).check(value, source, path)
    if tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif tp is type(None) or tp is None:
        ok = value is None
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:
        return                                  # a hint this checker does not know: not checked
    if not ok:
        _fail(source, path, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


# -- parameter sets --------------------------------------------------------------------------------------------
T = typing.TypeVar("T")


def strict(cls: type[T], values: dict, *, source: str | None = None, path: str = "") -> T:
    """`cls(**values)` for a dataclass after checking every key and type (at any depth) against its fields; the
    one strict-keys helper of the project."""
    Fields(cls, partial=False, construct=False).check(values, source or cls.__name__, path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        _fail(source or cls.__name__, path, str(exc))


def build(cls: type[T], data: Any, *, source: str, reserved: tuple[str, ...] = ()) -> T:
    """A paper's parameter set from plain data that must set every field (except `reserved` ones, which keep
    their defaults): what a tier file or a notebook's globals hold."""
    if data is None:
        _fail(source, "", "is empty; a tier file sets every parameter of its paper")
    if not isinstance(data, dict):
        _fail(source, "", f"must be a mapping of parameter names to values, got {type(data).__name__}")
    for key in reserved:
        if key in data:
            _fail(source, key, "is set by the runner, not by a parameter file")
    fields = [f for f in dataclasses.fields(cls) if f.name not in reserved]
    hints = typing.get_type_hints(cls, include_extras=True)
    unknown = [k for k in data if k not in {f.name for f in fields}]
    if unknown:
        _fail(source, unknown[0], f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(map(repr, unknown))}; allowed: {', '.join(f.name for f in fields)}")
    missing = [f.name for f in fields if f.name not in data]
    if missing:
        _fail(source, "", f"missing parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for f in fields:
        check(data[f.name], hints.get(f.name, Any), source, f.name)
    return cls(**data)


def from_namespace(cls: type[T], namespace: dict[str, Any], *, source: str = "the notebook's parameters") -> T:
    """The parameter set from a notebook's globals (its `parameters` cell, as papermill overrode it)."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in namespace]
    if missing:
        _fail(source, "", f"missing parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return build(cls, {n: namespace[n] for n in names}, source=source)


def as_dict(params) -> dict[str, Any]:
    """The parameter set as plain data (the values as given)."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


_SEED = re.compile(r"(^|_)seeds?$")


def seeds(params) -> dict[str, Any]:
    """Every seed at any depth, by dotted path: keys named `seed`, `seeds`, `*_seed`, `*_seeds`."""
    found: dict[str, Any] = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                here = _join(path, key)
                if isinstance(key, str) and _SEED.search(key):
                    found[here] = item
                else:
                    walk(item, here)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, _join(path, i))

    walk(as_dict(params) if dataclasses.is_dataclass(params) else dict(params), "")
    return found


# -- YAML ------------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML as 1.2 reads numbers: `1e-3` is a float (PyYAML's 1.1 resolver makes it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def optional(schema: Schema) -> Schema:
    """`{}` (the step is skipped, e.g. no pre-training for a pretrained model) or a value of `schema`."""
    return Either((lambda v: v == {}, Fields({}, name="empty mapping")), (lambda v: True, schema),
                  name=getattr(schema, "name", "spec"))


Tier = Literal["smoke", "cpu", "gpu"]
