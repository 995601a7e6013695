"""Recipe files: TOML in and out, strict, driven by the table of keys (:data:`app.template.options.OPTIONS`).

Typos are errors: an unknown key, a missing required key or a wrong type raises :class:`RecipeError` naming
the dotted key (``catalog.version``), so a misspelt option is never ignored in favour of a default. Paths are
relative to the recipe file, so a recipe moves with its inputs. A loaded recipe is also checked by
:func:`app.template.checks.recipe_problems` (the rules that need no file access). Format:
docs/formats/recipe.md.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from app.findings import Severity
from app.signing.output import write_output
from app.template import toml_writer
from app.template.checks import recipe_problems
from app.template.options import OPTIONS, SECTIONS, Option
from app.template.recipe import (
    FORMAT_VERSION,
    HINT_DOC,
    READABLE_VERSIONS,
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    PcrOptions,
    Recipe,
    RecipeError,
    SecretSource,
    SigningOptions,
    UkiOptions,
    short_repr,
)
from app.untrusted import read_bounded

#: A recipe is a few KiB of TOML: a larger file (or an endless pipe) is not one, and is not read further.
MAX_RECIPE_BYTES = 1 << 20
#: Paths up to this many ``..`` steps away from the recipe's directory are saved relative to it.
MAX_RELATIVE_UP = 2
#: The option class of each table.
_CLASSES: dict[str, type] = {
    "signing": SigningOptions,
    "uki": UkiOptions,
    "encryption": EncryptionOptions,
    "catalog": CatalogOptions,
    "boot": BootOptions,
    "output": OutputOptions,
    "pcr": PcrOptions,
}

# --- reading dicts ----------------------------------------------------------------------------------------

_MISSING: Any = object()


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Table:
    """One table of the recipe being read: knows its dotted name and which keys were consumed, so that
    whatever is left at :meth:`finish` is an unknown key (a typo) and refused."""

    def __init__(self, data: Any, name: str, base_dir: Path) -> None:
        if not isinstance(data, dict):
            raise RecipeError(f"{name}: expected a table, got {_type_name(data)}", HINT_DOC, key=name)
        self.data, self.name, self.base_dir = data, name, base_dir
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.name}.{k}" if self.name else k

    def _raw(self, k: str, required: bool, what: str) -> Any:
        self.used.add(k)
        if k in self.data:
            return self.data[k]
        if required:
            raise RecipeError(f"{self.key(k)}: required key is missing ({what})", HINT_DOC, key=self.key(k))
        return _MISSING

    def _wrong(self, k: str, value: Any, what: str) -> RecipeError:
        return RecipeError(
            f"{self.key(k)}: expected {what}, got {_type_name(value)} {short_repr(value)}",
            HINT_DOC,
            key=self.key(k),
        )

    def string(self, k: str, *, required: bool = False, default: Any = None, what: str = "a string") -> Any:
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, str):
            raise self._wrong(k, v, what)
        return v

    def integer(
        self, k: str, *, required: bool = False, default: Any = None, what: str = "an integer"
    ) -> Any:
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._wrong(k, v, what)
        return v

    def boolean(self, k: str, *, default: bool = False) -> bool:
        v = self._raw(k, False, "true or false")
        if v is _MISSING:
            return default
        if not isinstance(v, bool):
            raise self._wrong(k, v, "true or false")
        return v

    def int_list(self, k: str, *, required: bool = False, default: Any = None, what: str = "") -> Any:
        what = what or "an array of integers"
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, list):
            raise self._wrong(k, v, what)
        for i, item in enumerate(v):
            if not isinstance(item, int) or isinstance(item, bool):
                raise self._wrong(f"{k}[{i}]", item, "an integer")
        return list(v)

    def str_list(self, k: str) -> list[str]:
        v = self._raw(k, False, "an array of strings")
        if v is _MISSING:
            return []
        if not isinstance(v, list):
            raise self._wrong(k, v, "an array of strings")
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise self._wrong(f"{k}[{i}]", item, "a string")
        return list(v)

    def path(self, k: str, *, required: bool = False, what: str = "a file path") -> Path | None:
        v = self.string(k, required=required, what=what)
        return None if v is None else _resolve(v, self.key(k), self.base_dir)

    def secret(self, k: str, *, default: Any = _MISSING) -> Any:
        """A :class:`SecretSource`. The value is never quoted in an error: it may be a pasted secret."""
        what = '"prompt", { file = "PATH" } or { env = "VARIABLE" }'
        v = self._raw(k, False, what)
        if v is _MISSING:
            return SecretSource() if default is _MISSING else default
        key = self.key(k)
        if v == "prompt":
            return SecretSource.prompt()
        if isinstance(v, dict) and len(v) == 1:
            ((kind, value),) = v.items()
            if kind not in ("file", "env"):
                raise RecipeError(
                    f"{key}.{kind}: unknown key (a secret is read from a file or an env variable)",
                    _suggest(kind, ("file", "env")),
                    key=f"{key}.{kind}",
                )
            if not isinstance(value, str):
                raise RecipeError(f"{key}.{kind}: expected a string, got {_type_name(value)}", key=key)
            if kind == "file":
                return SecretSource.file(_resolve(value, f"{key}.file", self.base_dir))
            return SecretSource.env(value)
        got = "a table with several keys" if isinstance(v, dict) else _type_name(v)
        raise RecipeError(
            f"{key}: expected {what}, got {got}",
            "a recipe never holds a secret itself, only where the build reads it from",
            key=key,
        )

    def table(self, k: str, *, required: bool = False) -> _Table | None:
        v = self._raw(k, required, "a table")
        if v is _MISSING:
            return None
        return _Table(v, self.key(k), self.base_dir)

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            k = unknown[0]
            raise RecipeError(f"{self.key(k)}: unknown key", _suggest(k, list(self.used)), key=self.key(k))


def _suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else f"remove it ({HINT_DOC} lists every key)"


def _resolve(value: str, key: str, base_dir: Path) -> Path:
    """A recipe path: ``~`` expanded, relative ones taken from the recipe's directory, normalised."""
    if not value or "\0" in value:
        raise RecipeError(f"{key}: {short_repr(value)} is not a path", "give a file path", key=key)
    return Path(os.path.abspath(os.path.join(base_dir, os.path.expanduser(value))))


#: What a value of each kind is called in "expected …, got …".
_WHAT = {"int": "an integer", "str": "a string", "path": "a file path", "int_list": "an array of integers"}


def _read(t: _Table, opt: Option) -> Any:
    """The value of ``opt`` in table ``t`` (its default when absent), type-checked."""
    what = opt.what or _WHAT.get(opt.kind, "")
    name, default = opt.name, opt.default
    if isinstance(default, list):
        default = list(default)  # each recipe its own list
    if opt.kind == "int":
        return t.integer(name, required=opt.required, default=default, what=what)
    if opt.kind in ("str", "ref"):
        return t.string(name, required=opt.required, default=default, what=what)
    if opt.kind == "bool":
        return t.boolean(name, default=default)
    if opt.kind == "path":
        return t.path(name, required=opt.required, what=what)
    if opt.kind == "int_list":
        return t.int_list(name, required=opt.required, default=default, what=what if opt.required else "")
    if opt.kind == "refs":
        return t.str_list(name)
    if opt.kind == "secret":
        return t.secret(name, default=SecretSource() if default is not None else None)
    return _kdf_params(t.table(name))


def _kdf_params(params: _Table | None) -> dict[str, Any] | None:
    """``encryption.kdf_params``: known keys type-checked; others kept, so the checks name them against the
    chosen KDF."""
    if params is None:
        return None
    out: dict[str, Any] = {}
    for k, v in params.data.items():
        if k == "hash":
            out[k] = params.string(k)
        elif k in ("time", "memory_kib", "parallel", "iterations"):
            out[k] = params.integer(k)
        else:
            params.used.add(k)
            out[k] = v
    return out


def recipe_from_dict(d: dict[str, Any], base_dir: str | os.PathLike[str]) -> Recipe:
    """Build a Recipe from parsed TOML (``base_dir``: where relative paths start, the recipe's directory).

    Raises :class:`RecipeError` for an unknown or missing key, a wrong type, or any value error that
    :func:`app.template.checks.recipe_problems` finds without looking at files.
    """
    top = _Table(d, "", Path(base_dir))
    version = top.integer("format_version", required=True, what=OPTIONS[0].what)
    if version not in READABLE_VERSIONS:
        raise RecipeError(
            f"format_version: {version} is not supported (this Shieldwright reads recipe formats "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)})",
            "use the Shieldwright version that wrote it" if version > FORMAT_VERSION else HINT_DOC,
            key="format_version",
        )
    if version < 2 and "pcr" in d:
        raise RecipeError("pcr: the [pcr] table needs format_version = 2", HINT_DOC, key="pcr")
    top_level = [o for o in OPTIONS if o.section is None and o.key != "format_version"]
    values: dict[str, Any] = {o.name: _read(top, o) for o in top_level}
    parts: dict[str, Any] = {}
    for section in SECTIONS:
        options = [o for o in OPTIONS if o.section == section]
        t = top.table(section, required=any(o.required for o in options))
        fields = {} if t is None else {o.name: _read(t, o) for o in options}
        if section == "uki" and fields.get("source") == "files" and t is not None:
            _resolve_uki_files(fields, t)
        if t is not None:
            t.finish()
        parts[section] = _CLASSES[section](**fields)
    top.finish()
    recipe = Recipe(**values, **parts)  # upgraded in memory: version 1 differs only by lacking [pcr]
    for p in recipe_problems(recipe, check_files=False):
        if p.severity is Severity.ERROR:
            raise p.error()
    return recipe


def _resolve_uki_files(fields: dict[str, Any], t: _Table) -> None:
    """With ``uki.source = "files"`` the kernel and initrds are paths on this machine, taken from the recipe's
    directory; image references stay as written."""
    if fields.get("kernel") is not None:
        fields["kernel"] = str(_resolve(fields["kernel"], t.key("kernel"), t.base_dir))
    fields["initrds"] = [
        str(_resolve(v, f"{t.key('initrds')}[{i}]", t.base_dir)) for i, v in enumerate(fields["initrds"])
    ]


# --- writing dicts ------------------------------------------------------------------------------------------


def _portable(path: Path | str, base_dir: Path) -> str:
    """``path`` relative to ``base_dir`` when it is inside it or at most MAX_RELATIVE_UP levels up
    (sharing more than the filesystem root), else absolute. Always "/"-separated."""
    absolute = os.path.abspath(path)
    base = os.path.abspath(base_dir)
    rel = os.path.relpath(absolute, base)
    ups = 0
    for part in Path(rel).parts:
        if part != "..":
            break
        ups += 1
    if ups <= MAX_RELATIVE_UP and os.path.commonpath([absolute, base]) != os.path.abspath(os.sep):
        return Path(rel).as_posix()
    return absolute


def _secret_dict(s: SecretSource, base_dir: Path) -> Any:
    if s.kind == "file":
        return {"file": _portable(s.value or "", base_dir)}
    if s.kind == "env":
        return {"env": s.value}
    return "prompt"


def _dump(opt: Option, value: Any, recipe: Recipe, base: Path) -> Any:
    """``value`` as TOML-ready data: paths relative when close, secret sources as tables; None = left out."""
    if value is None:
        return None
    if opt.kind == "path":
        return _portable(value, base)
    if opt.kind == "secret":
        return _secret_dict(value, base)
    files = recipe.uki.source == "files"
    if opt.kind == "ref":
        return _portable(value, base) if files else value
    if opt.kind == "refs":
        if not value and recipe.uki.kernel is None:
            return None  # no kernel chosen: the image's own initrds, nothing to say
        return [_portable(v, base) if files else v for v in value]
    if isinstance(value, list | dict):
        return type(value)(value)
    return value


def recipe_to_dict(recipe: Recipe, base_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe as TOML-ready data (None values left out); paths relative to ``base_dir`` when close."""
    base = Path(base_dir)
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        value = _dump(opt, opt.get(recipe), recipe, base)
        table = out if opt.section is None else out.setdefault(opt.section, {})
        if value is not None:
            table[opt.name] = value
    out["format_version"] = FORMAT_VERSION  # a recipe read as version 1 is written as the current format
    return out


# --- files --------------------------------------------------------------------------------------------------

_HEADER_COMMENT = (
    "# Shieldwright recipe: build it with `shieldwright build THIS-FILE` (format: docs/formats/recipe.md).\n"
    "# It holds no secrets: passphrases are prompted for, or read from the file or environment variable\n"
    "# named here. Relative paths start at this file's directory.\n\n"
)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and check a recipe file; relative paths in it are taken from its directory."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"{path} is a directory, not a recipe", "give the .toml file")
    data = read_bounded(path, MAX_RECIPE_BYTES, RecipeError, "check the path", what="recipe")
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path} is larger than {MAX_RECIPE_BYTES} bytes: not a recipe", "check the path")
    try:
        d = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path} is not UTF-8 text", "a recipe is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}", HINT_DOC) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise RecipeError(
            f"{path} nests arrays or tables too deeply", "a recipe is a flat TOML file"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts
        raise RecipeError(f"{path} is not valid TOML: {exc}", HINT_DOC) from None
    return recipe_from_dict(d, path.absolute().parent)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``recipe`` to ``path`` atomically (complete or not at all), paths relative to its directory.

    An existing ``path`` is replaced only with ``overwrite`` (the CLI's ``--force``, or the wizard's file
    dialog having asked): a mistyped ``--save-recipe`` must not destroy a key or an image. Otherwise
    :class:`~app.errors.OutputExistsError`. There is nothing secret to leak: a Recipe holds
    :class:`SecretSource` references only.
    """
    path = Path(path)
    text = toml_writer.dumps(recipe_to_dict(recipe, path.absolute().parent), _HEADER_COMMENT)
    return write_output(path, text.encode("utf-8"), overwrite=overwrite)
