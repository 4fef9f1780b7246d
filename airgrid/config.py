"""The one config mechanism: typed nested structs decoded from TOML (or YAML) tables.

A config is a tree of frozen msgspec Structs (`Section`). Defaults are the field defaults;
constraints sit next to the fields (`Annotated[int, Meta(ge=1, description="...")]`,
`Literal[...]` for choices, `Parse(...)` for values such as durations that need parsing).
Checks between fields go in a `problems()` method of the struct.

`decode` walks the data table by table and key by key against the struct types and
collects every problem before it raises, so one run reports all errors of a file (msgspec's
own `convert` stops at the first). Each problem names the file, the dotted key (or the line,
for YAML read with line numbers), what was expected and what was found; secret values are
masked (see `airgrid.secrets`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from airgrid import secrets
from airgrid.errors import AirgridError


class _Nothing(enum.Enum):
    NOTHING = "nothing"


#: "Nothing was found" (a missing key), distinct from a found None.
NOTHING: Literal[_Nothing.NOTHING] = _Nothing.NOTHING


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config file."""

    file: str
    key: str  # dotted path, e.g. "alerting.receivers.ops.targets[0].channel"
    expected: str = ""
    found: str | None = None  # repr of what was found, already masked; None: nothing
    line: int | None = None
    message: str = ""  # a whole sentence instead of "key: expected …, got …"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.message:
            return f"{where}: {self.message}"
        got = "" if self.found is None else f", got {self.found}"
        return f"{where}: {self.key}: expected {self.expected}{got}"


def problem(file: Path | str, key: str, expected: str, found: object = NOTHING,
            line: int | None = None) -> Problem:
    """A Problem whose found value is shown masked when `key` is a secret."""
    shown = None if found is NOTHING else secrets.mask(key, found)
    return Problem(str(file), key, expected, shown, line)


class ConfigError(AirgridError, ValueError):
    """A config file is wrong: every problem found in it, one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.file, self.key, self.expected, self.line = (first.file, first.key,
                                                         first.expected, first.line)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: Path | str, key: str, expected: str,
            found: object = NOTHING) -> ConfigError:
        return cls([problem(file, key, expected, found)])


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config table: frozen, unknown keys refused."""


@dataclass(frozen=True)
class Invalid:
    """A problem a struct's `problems()` hook found; `key` is relative to the struct."""

    key: str
    expected: str = ""
    found: object = NOTHING
    message: str = ""


@dataclass(frozen=True)
class Parse:
    """`Annotated[T, Parse(fn, "what")]`: the value goes through `fn` (ValueError = bad)."""

    fn: Callable[[Any], Any]
    expected: str
    explain: bool = False  # add the ValueError's own text to the expectation


@dataclass(frozen=True)
class RelativeToFile:
    """`Annotated[Path, RelativeToFile()]`: a relative path is taken from the file's folder."""


class _Bad(enum.Enum):
    BAD = "bad"


_BAD = _Bad.BAD  # a value that failed; its problem is already recorded


@dataclass
class _Walk:
    file: str
    base: Path
    lines: Mapping[str, int]
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def add(self, key: str, expected: str, found: object = NOTHING, message: str = "") -> None:
        line = self.line_of(key)
        if message:
            self.problems.append(Problem(self.file, key, expected, None, line, message))
        else:
            self.problems.append(problem(self.file, key, expected, found, line))

    def line_of(self, key: str) -> int | None:
        """The line of `key`, else of its nearest enclosing table (YAML only)."""
        k = key
        while k:
            if k in self.lines:
                return self.lines[k]
            cut = max(k.rfind("."), k.rfind("["))
            k = k[:cut] if cut > 0 else ""
        return self.lines.get("") if self.lines else None


T = TypeVar("T")


def decode(data: Any, type_: type[T], file: Path | str = "<config>", prefix: str = "",
           lines: Mapping[str, int] | None = None) -> T:
    """`data` as a `type_`; raise ConfigError listing every problem in it."""
    value, problems = decode_all(data, type_, file, prefix, lines)
    if problems:
        raise ConfigError(problems)
    return typing.cast(T, value)


def decode_all(data: Any, type_: Any, file: Path | str = "<config>", prefix: str = "",
               lines: Mapping[str, int] | None = None) -> tuple[Any, list[Problem]]:
    """`data` decoded as `type_` (None when anything is wrong) and the problems found."""
    f = str(file)
    base = Path(f).parent if not f.startswith("<") else Path.cwd()
    walk = _Walk(f, base, lines or {})
    value = _value(walk, data, type_, prefix)
    return (None if value is _BAD else value), walk.problems


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; any problem reading or parsing it is a ConfigError."""
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError.one(path, "(file)", "a readable TOML file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.one(path, "(syntax)", "valid TOML", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError.one(path, "(file)", "UTF-8 text", str(exc)) from exc


def load_file(path: Path, type_: type[T], prefix: str = "") -> T:
    """A TOML config file as `type_`: secrets resolved and checked, every problem listed.

    The one loader every TOML config goes through, so checking a config and running with
    it validate exactly the same things.
    """
    raw = load_toml(path)
    data, unresolved = secrets.resolve(raw)
    problems = [Problem(str(path), p.key, p.expected, p.found)
                for p in [*secrets.exposed_secrets(path, raw), *unresolved]]
    value, found = decode_all(data, type_, path, prefix)
    problems += found
    if problems:
        raise ConfigError(problems)
    return typing.cast(T, value)


# --- the walker ---------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _value(w: _Walk, value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(tp)
        return _annotated(w, value, tp, base, extras, key)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _struct(w, value, tp, key)
    if origin in (typing.Union, types.UnionType):
        return _union(w, value, tp, key)
    if origin in (list, tuple, Sequence) and not _is_fixed_tuple(tp):
        return _sequence(w, value, tp, key)
    if origin in (dict, Mapping):
        return _mapping(w, value, tp, key)
    if tp is Path:
        return _leaf(w, value, str, key, "a file path", Path)
    return _leaf(w, value, tp, key)


def _is_fixed_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and not (len(args) == 2 and args[1] is Ellipsis)


def _annotated(w: _Walk, value: Any, tp: Any, base: Any, extras: list[Any], key: str) -> Any:
    parse = next((e for e in extras if isinstance(e, Parse)), None)
    if parse is not None:
        try:
            return parse.fn(value)
        except (ValueError, TypeError) as exc:
            w.add(key, f"{parse.expected} ({exc})" if parse.explain else parse.expected, value)
            return _BAD
    if any(isinstance(e, RelativeToFile) for e in extras):
        path = _value(w, value, base, key)
        return path if path is _BAD or path is None else w.base / path
    if base is Path:
        return _leaf(w, value, str, key, _expected(tp), Path)
    if _is_container(base):
        items = _value(w, value, base, key)
        if items is _BAD:
            return _BAD
        for meta in (e for e in extras if isinstance(e, msgspec.Meta)):
            if (meta.min_length is not None and len(items) < meta.min_length) or (
                    meta.max_length is not None and len(items) > meta.max_length):
                w.add(key, _expected(tp), value)
                return _BAD
        return items
    return _leaf(w, value, tp, key)


def _relative_to_file(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_relative_to_file(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is typing.Annotated and any(
        isinstance(e, RelativeToFile) for e in typing.get_args(tp)[1:])


def _is_container(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (list, tuple, dict, Sequence, Mapping) or (
        isinstance(tp, type) and issubclass(tp, msgspec.Struct))


def _leaf(w: _Walk, value: Any, tp: Any, key: str, expected: str | None = None,
          wrap: Callable[[Any], Any] | None = None) -> Any:
    if isinstance(value, Mapping) and not _accepts_mapping(tp):
        w.add(key, expected or _expected(tp), value)
        return _BAD
    try:
        out = msgspec.convert(value, tp)
    except msgspec.ValidationError:
        w.add(key, expected or _expected(tp), value)
        return _BAD
    return wrap(out) if wrap is not None else out


def _accepts_mapping(tp: Any) -> bool:
    return tp is Any or typing.get_origin(tp) in (dict, Mapping)


def _union(w: _Walk, value: Any, tp: Any, key: str) -> Any:
    members = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None and len(members) < len(typing.get_args(tp)):
        return None
    if len(members) == 1:
        return _value(w, value, members[0], key)
    structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
    if structs:
        return _tagged(w, value, structs, key)
    return _leaf(w, value, functools.reduce(operator.or_, members), key)


def _tagged(w: _Walk, value: Any, structs: list[type[msgspec.Struct]], key: str) -> Any:
    """A table whose tag key (`type = "webhook"`) picks the struct."""
    tag_field = str(structs[0].__struct_config__.tag_field)
    by_tag = {str(s.__struct_config__.tag): s for s in structs}
    if not isinstance(value, Mapping):
        w.add(key, f"a table with {tag_field} = one of {sorted(by_tag)}", value)
        return _BAD
    tag = value.get(tag_field, NOTHING)
    if tag not in by_tag:
        w.add(_join(key, tag_field), f"one of {sorted(by_tag)}", tag)
        return _BAD
    rest = {k: v for k, v in value.items() if k != tag_field}
    return _struct(w, rest, by_tag[tag], key)


def _sequence(w: _Walk, value: Any, tp: Any, key: str) -> Any:
    args = typing.get_args(tp)
    item = args[0] if args else Any
    if not isinstance(value, list | tuple):
        w.add(key, _expected(tp), value)
        return _BAD
    items = [_value(w, v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if any(v is _BAD for v in items):
        return _BAD
    return tuple(items) if typing.get_origin(tp) is tuple else items


def _mapping(w: _Walk, value: Any, tp: Any, key: str) -> Any:
    args = typing.get_args(tp)
    key_tp, item_tp = args if args else (str, Any)
    if not isinstance(value, Mapping):
        w.add(key, _expected(tp), value)
        return _BAD
    out: dict[Any, Any] = {}
    bad = False
    for k, v in value.items():
        path = _join(key, str(k))
        name = _leaf(w, k, key_tp, path, f"a name: {_expected(key_tp)}")
        item = _value(w, v, item_tp, path)
        bad = bad or name is _BAD or item is _BAD
        out[name] = item
    return _BAD if bad else out


def _struct(w: _Walk, value: Any, tp: type[msgspec.Struct], key: str) -> Any:
    fields = msgspec.structs.fields(tp)
    names = {f.encode_name: f for f in fields}
    if not isinstance(value, Mapping):
        w.add(key, f"a table with keys {sorted(names)}", value)
        return _BAD
    kwargs: dict[str, Any] = {}
    bad = False
    for k in value:
        if k not in names:
            path = _join(key, str(k))
            w.add(path, f"one of {sorted(names)}",
                  message=f"{path}: unknown key, expected one of {sorted(names)}")
            bad = True
    for f in fields:
        path = _join(key, f.encode_name)
        if f.encode_name not in value:
            if isinstance(f.default, Path) and _relative_to_file(f.type):
                kwargs[f.name] = w.base / f.default
            elif isinstance(f.default, msgspec.Struct) and isinstance(f.default, f.type):
                kwargs[f.name] = _value(w, {}, f.type, path)  # a table's defaults, resolved
            if f.required:
                w.add(path, f"{_expected(f.type)} (required)")
                bad = True
            continue
        v = _value(w, value[f.encode_name], f.type, path)
        if v is _BAD:
            bad = True
        else:
            kwargs[f.name] = v
    if bad:
        return _BAD
    out = tp(**kwargs)
    hook = getattr(out, "problems", None)
    if callable(hook):
        found = list(typing.cast(Iterable[Invalid], hook()))
        for p in found:
            w.add(_join(key, p.key) if p.key else key, p.expected, p.found, p.message)
        if found:
            return _BAD
    return out


# --- what was expected, in words -------------------------------------------------------


def _expected(tp: Any) -> str:
    """A short description of what `tp` accepts, for "expected …"."""
    if typing.get_origin(tp) is typing.Annotated:
        for extra in typing.get_args(tp)[1:]:
            if isinstance(extra, msgspec.Meta) and extra.description:
                return extra.description
            if isinstance(extra, Parse):
                return extra.expected
        tp = typing.get_args(tp)[0] if _is_container(typing.get_args(tp)[0]) else tp
    try:
        info = msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):
        return getattr(tp, "__name__", str(tp))
    return _describe(info)


def _describe(info: msgspec.inspect.Type) -> str:
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        extra = info.extra_json_schema or {}
        return str(extra.get("description") or _describe(info.type))
    if isinstance(info, mi.BoolType):
        return "true or false (bool)"
    if isinstance(info, mi.IntType | mi.FloatType):
        what = "an integer (int)" if isinstance(info, mi.IntType) else "a number (float)"
        bounds = [f"{op} {v}" for op, v in ((">", info.gt), (">=", info.ge), ("<", info.lt),
                                            ("<=", info.le)) if v is not None]
        return what + (f" {' and '.join(bounds)}" if bounds else "")
    if isinstance(info, mi.StrType):
        if info.pattern:
            return f"a string matching {info.pattern} (str)"
        if info.min_length:
            return f"a string of at least {info.min_length} characters (str)"
        return "a string (str)"
    if isinstance(info, mi.LiteralType):
        return f"one of {list(info.values)}"
    if isinstance(info, mi.ListType | mi.VarTupleType):
        return f"a list of {_plural(_describe(info.item_type))}"
    if isinstance(info, mi.DictType):
        return f"a table of name = {_describe(info.value_type)}"
    if isinstance(info, mi.DateTimeType):
        return "a date-time" + (" with an offset (+08:00)" if info.tz else "")
    if isinstance(info, mi.UnionType):
        return " or ".join(_describe(t) for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.StructType):
        return "a table"
    return type(info).__name__.removesuffix("Type").lower()


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article):]
    return text


__all__ = ["NOTHING", "ConfigError", "Invalid", "Parse", "Problem", "RelativeToFile",
           "Section", "decode", "decode_all", "load_file", "load_toml", "problem"]
