"""Stage configurations: one frozen dataclass per stage, whose fields are the stage's options.

A field is declared with :func:`option`: its default, a help line, and how a command line spells it. From the
fields alone come, so that nothing is listed twice:

- the command's argparse flags (:meth:`StageConfig.add_arguments`);
- the configuration from parsed flags (:meth:`StageConfig.from_args`) or from a TOML table
  (:meth:`StageConfig.from_table`, every value converted and checked like its flag);
- the valid keys of the table (:meth:`StageConfig.keys`);
- the equivalent command line (:meth:`StageConfig.argv`) that the pipeline's manifest records.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, field, fields
from typing import Any, Callable, ClassVar, Mapping


class Stopped(Exception):
    """A stage stopped on purpose (a budget reached) after saving what it finished: rerun to go on (exit 3)."""


def _int_at_least(value, minimum: int, expected: str) -> int:
    if isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    if n < minimum or (isinstance(value, float) and value != n):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return n


def positive_int(value) -> int:
    """An integer >= 1 (argparse type)."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value) -> int:
    """An integer >= 0 (argparse type)."""
    return _int_at_least(value, 0, "an integer >= 0")


def _finite_float(value, *, zero: bool, expected: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not (0 <= x if zero else 0 < x) or not x < float("inf"):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return x


def positive_float(value) -> float:
    """A finite number > 0 (argparse type)."""
    return _finite_float(value, zero=False, expected="a positive number")


def non_negative_float(value) -> float:
    """A finite number >= 0 (argparse type)."""
    return _finite_float(value, zero=True, expected="a finite number >= 0")


def unit_interval(value) -> float:
    """A number in (0, 1] (argparse type)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return v


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, type: Callable | None = None,
           choices=None, nargs=None, const=None, metavar: str | None = None, required: bool = False,
           group: str | None = None, repeat: bool = False) -> Any:
    """A configuration field: ``default`` (none: required), its ``help`` line, and its command-line form
    (``flag``, default ``--name-with-dashes``; ``type`` converts and checks a value; ``choices``, ``nargs``,
    ``const``, ``metavar`` as in argparse; ``group``: the help section it is listed in). A bool field
    defaulting to False is a plain switch; ``type=bool`` with default None is ``--name`` / ``--no-name``.
    ``required=True`` marks a required field that must still have a default (None) because it follows
    fields with defaults (a subclass of a configuration with defaults). ``repeat=True``: a tuple field whose
    flag is given once per item (``--x A --x B``)."""
    meta = {"help": help, "flag": flag, "type": type, "choices": choices, "nargs": nargs, "const": const,
            "metavar": metavar, "required": required or default is MISSING, "group": group, "repeat": repeat}
    return field(default=None if default is MISSING and required else default, metadata=meta)


def _required(f) -> bool:
    return bool(f.metadata.get("required")) or f.default is MISSING


class StageConfig:
    """Base of the stage configurations (frozen dataclasses). ``command``: the ``intdistill`` command whose
    flags the fields are."""

    command: ClassVar[str] = ""

    def __post_init__(self) -> None:
        missing = [f.name for f in fields(self) if _required(f) and getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"{self.command}: expected a value for {', '.join(missing)}")

    @classmethod
    def flags(cls, name: str) -> tuple[str, ...]:
        """The option strings of field ``name``: its ``flag`` (one, or several: ``("-n", "--top-n")``), by
        default ``--name-with-dashes``."""
        f = {f.name: f for f in fields(cls)}[name]
        flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
        return (flag,) if isinstance(flag, str) else tuple(flag)

    @classmethod
    def flag(cls, name: str) -> str:
        """The option string the equivalent command line uses for field ``name``."""
        return cls.flags(name)[0]

    @classmethod
    def keys(cls) -> frozenset[str]:
        """The option names (= the TOML keys): the field names."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, skip: frozenset[str] = frozenset(),
                      only: frozenset[str] | None = None) -> None:
        """Add one argparse flag per field (those in ``only`` when given, but never those in ``skip``); fields
        with a ``group`` are listed under it, after the others."""
        groups: dict[str, Any] = {}
        ordered = sorted(fields(cls), key=lambda f: f.metadata.get("group") is not None)
        for f in ordered:
            if f.name in skip or (only is not None and f.name not in only):
                continue
            m = f.metadata
            kw: dict[str, Any] = {"dest": f.name, "help": m.get("help") or None}
            if f.default is False:
                kw["action"] = "store_true"
            elif m.get("repeat"):
                kw.update(action="append", default=None, help=(kw["help"] or "") + "; repeatable")
                for key in ("type", "metavar"):
                    if m.get(key) is not None:
                        kw[key] = m[key]
            elif m.get("type") is bool:
                kw.update(action=argparse.BooleanOptionalAction, default=None)
            else:
                if _required(f):
                    kw["required"] = True
                else:
                    kw["default"] = f.default
                for key in ("type", "choices", "nargs", "const", "metavar"):
                    if m.get(key) is not None:
                        kw[key] = m[key]
            group = m.get("group")
            target = parser if group is None else groups.setdefault(group, parser.add_argument_group(group))
            target.add_argument(*cls.flags(f.name), **kw)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **given: Any):
        """The configuration of parsed flags (fields not among the flags come from ``given``)."""
        values = {f.name: given[f.name] if f.name in given else getattr(args, f.name) for f in fields(cls)}
        for f in fields(cls):
            if f.metadata.get("repeat"):
                values[f.name] = f.default if values[f.name] is None else tuple(values[f.name])
        return cls(**values)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "", **given: Any):
        """The configuration of a TOML table (plus ``given``, what the caller sets itself). Every value is
        converted and checked as its flag would be; an unknown key or a bad value is a ValueError naming
        ``where`` (e.g. ``[candidates]``), the key, and what was expected."""
        by_name = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in {**table, **given}.items():
            f = by_name.get(key)
            if f is None:
                raise ValueError(f"{where} {key}: unknown key; the valid keys are {', '.join(sorted(by_name))}")
            values[key] = value if key in given else _convert(f, value, f"{where} {key}")
        missing = [n for n, f in by_name.items() if _required(f) and values.get(n) is None]
        if missing:
            raise ValueError(f"{where}: expected a value for {', '.join(missing)}")
        return cls(**values)

    def argv(self) -> list[str]:
        """The equivalent ``intdistill`` command line: the command, then every field that is required or
        differs from its default."""
        out = [self.command]
        # the required first, then the others as --help lists them
        for f in sorted(fields(self), key=lambda f: (not _required(f), f.metadata.get("group") is not None)):
            value = getattr(self, f.name)
            if value is None or (not _required(f) and value == f.default):
                continue
            flag = self.flag(f.name)
            if value is True and (f.default is False or f.metadata.get("type") is bool):
                out.append(flag)
            elif value is False and f.metadata.get("type") is bool:
                out.append("--no-" + flag.lstrip("-"))
            elif f.metadata.get("repeat"):
                out += [x for v in value for x in (flag, str(v))]
            elif isinstance(value, (list, tuple)):
                out += [flag, *map(str, value)]
            else:
                out += [flag, str(value)]
        return out


def _convert(f, value: Any, where: str) -> Any:
    m = f.metadata
    if value is None:
        return None
    if f.default is False or m.get("type") is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    conv = m.get("type")
    try:
        if m.get("repeat"):
            items = value if isinstance(value, list) else [value]
            return tuple(conv(v) if conv else v for v in items)
        if m.get("nargs") in ("+", "*"):
            items = value if isinstance(value, list) else [value]
            value = [conv(v) if conv else v for v in items]
        elif conv is not None:
            value = conv(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
    choices = m.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value
