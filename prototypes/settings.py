"""Typed settings: one definition per settings slot, one validator for all of them.

A settings *kind* is a frozen dataclass: its fields are the settings, with
their types and defaults (``field(metadata=...)`` adds ``min``, ``max`` or
``choices``). What the image holds is plain data (a dict in a slot), never
the dataclass: a moved class would load as Broken. ``check`` turns that
plain data into a kind, refusing unknown keys and wrong types with one kind
of error, ``SettingsError``, which names the slot and every problem at once.

Rules, the same for every kind:

* an unknown key is refused, with the closest known name when there is one;
* ``int`` takes whole numbers (not ``True``), ``float`` takes any number,
  ``bool`` only ``True``/``False``, ``str`` only text;
* ``tuple[str, ...]`` takes a list or tuple of text (stored back as a list);
* ``dict[str, float]`` takes a mapping of numbers that *updates* the
  default mapping (give only the entries you change);
* ``X | None`` also takes ``None``.
"""
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence

from image.errors import SettingsError

__all__ = ["SettingsError", "check", "defaults", "plain", "read"]


def check(kind, data=None, *, where, base=None, **overrides):
    """``kind`` from plain ``data`` over its defaults (and ``base``, and ``overrides`` not None)."""
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    given = {}
    for layer in (base, data, {k: v for k, v in overrides.items() if v is not None}):
        for key, value in dict(layer or {}).items():
            f = fields.get(key)
            if (f is not None and _origin(hints[key]) is dict and key in given
                    and isinstance(value, Mapping) and isinstance(given[key], Mapping)):
                given[key] = {**given[key], **dict(value)}
            else:
                given[key] = value
    problems = []
    for key in sorted(set(given) - set(fields)):
        near = difflib.get_close_matches(key, fields, n=1)
        problems.append(f"unknown setting {key!r}" + (f" (did you mean {near[0]!r}?)" if near
                                                        else ""))
    values = {}
    for name, f in fields.items():
        if name not in given:
            continue
        value, problem = _coerce(given[name], hints[name], f, name)
        if problem:
            problems.append(problem)
        else:
            values[name] = value
    if problems:
        raise SettingsError(f"{where} has bad settings: " + "; ".join(problems)
                            + f". The settings are: {', '.join(fields)}")
    out = kind(**values)
    for name, hint in hints.items():        # dict fields update their default mapping
        if _origin(hint) is dict and name in values:
            default = _default(fields[name])
            object.__setattr__(out, name, {**default, **values[name]})
    return out


def defaults(kind) -> dict:
    """The kind's defaults as plain data."""
    return plain(kind())


def plain(obj) -> dict:
    """A kind as plain data (tuples as lists), ready for a slot."""
    def conv(v):
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def read(obj, slot, kind, *, base=None):
    """``kind`` from ``obj``'s slot ``slot`` (inherited or absent: defaults)."""
    data = obj.lookup(slot, None)
    name = obj.lookup("name", None) or type(obj).__name__
    return check(kind, data, where=f"{name}.{slot}", base=base)


def _default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _origin(hint):
    return typing.get_origin(hint) or hint


def _optional(hint):
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint, True
    return hint, False


def _coerce(value, hint, f, name):
    hint, none_ok = _optional(hint)
    if value is None:
        return (None, None) if none_ok else (None, f"{name} must be set, not None")
    origin = _origin(hint)
    meta = f.metadata
    bad = None
    if origin is bool:
        bad = None if isinstance(value, bool) else "true or false"
    elif origin is int:
        bad = None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        else:
            bad = "a number"
    elif origin is str:
        bad = None if isinstance(value, str) else "text"
    elif origin is tuple:          # PersistentList too: it is a Sequence, not a list
        if (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
                and all(isinstance(v, str) for v in value)):
            value = tuple(value)
        else:
            bad = "a list of text"
    elif origin is dict:
        items = dict(value) if isinstance(value, Mapping) else None
        if items is None or not all(isinstance(k, str) and isinstance(v, (int, float))
                                    and not isinstance(v, bool) for k, v in items.items()):
            bad = "a mapping of names to numbers"
        else:
            value = {k: float(v) for k, v in items.items()}
    if bad:
        return None, f"{name} must be {bad}, not {value!r}"
    if "choices" in meta and value not in meta["choices"]:
        return None, f"{name} is {value!r}; it must be one of {', '.join(map(str, meta['choices']))}"
    if "min" in meta and value < meta["min"]:
        return None, f"{name} is {value!r}; it must be ≥ {meta['min']}"
    if "max" in meta and value > meta["max"]:
        return None, f"{name} is {value!r}; it must be ≤ {meta['max']}"
    return value, None


def number(default, *, min=None, max=None):
    """A dataclass field with bounds."""
    meta = {k: v for k, v in (("min", min), ("max", max)) if v is not None}
    return dataclasses.field(default=default, metadata=meta)


def choice(default, choices):
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def listing(default):
    return dataclasses.field(default=tuple(default))


def mapping(default):
    return dataclasses.field(default_factory=lambda: dict(default))
