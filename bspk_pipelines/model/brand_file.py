"""Reading brand files (`mappings/<brand>.yaml`) into `Brand`s, safely: plain YAML of at most
1 MiB, nested at most 32 levels, without anchors or aliases. A mistake is reported with the
file, the key path, what was expected and what was found, before any asset runs
(`bspk check-config`), one message per mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bspk_pipelines.model.brand import BRAND_ID, Brand
from bspk_pipelines.settings import Settings

# A brand file is a few kilobytes of settings: past this it is not one, and is not read.
MAX_BRAND_FILE_BYTES = 1 << 20
# Its deepest key path is a few levels (sources.pos.files[0].columns.x.transforms[0].split.sep);
# PyYAML builds nested values by recursion, which a bracket left open would exhaust.
MAX_DEPTH = 32


class ConfigError(Exception):
    """One or more mistakes in brand files, each naming file, key path, expected and found."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


SOURCE_FORMATS = ("bspk", "csv", "shopify")


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "function-after[_interval(), nullable[str]]") or "[" in str(part):
            continue  # pydantic's names for union branches are noise to a brand engineer
        elif i and isinstance(loc[i - 1], int) and loc[i + 1:i + 2] == (part,):
            continue  # the tag of a transform (`transforms[0].split.split.sep`): its key follows
        elif i == 2 and loc[0] == "sources" and part in SOURCE_FORMATS:
            continue  # the format a source's keys were read as (`sources.pos.csv.files`): the file says it
        else:
            path += f".{part}" if path else str(part)
    return path


def _located(err: dict[str, Any]) -> tuple[Any, ...]:
    """Where a mistake is: a source's unknown format is at its `format` key."""
    return (*err["loc"], "format") if err["type"] in ("union_tag_invalid", "union_tag_not_found") else err["loc"]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(err: dict[str, Any]) -> str:
    # A value may be long (up to the file's size): a message shows its start.
    msg = _cut(err["msg"].removeprefix("Value error, "), 500)
    found = _cut(repr(err.get("input")), 200)
    if err["type"] == "missing":
        return "a value is required; found nothing"
    if err["type"] == "extra_forbidden":
        return f"no such key (a typo?); found {found}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = err.get("ctx", {}).get("tag")
        return f"one of {', '.join(SOURCE_FORMATS)}; found {_cut(repr(tag), 200) if tag else 'nothing'}"
    if "found" in msg:
        return msg
    if err["type"] == "value_error" and isinstance(err.get("input"), dict):
        return msg  # a check across keys names what it found: the whole mapping would bury it
    return f"{msg}; found {found}"


class _Refused(Exception):
    """A brand file's YAML uses what brand files may not, at `mark`."""

    def __init__(self, mark: yaml.Mark, problem: str):
        super().__init__(f"line {mark.line + 1}, column {mark.column + 1}: {problem}")


class _BrandLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases, nested at most MAX_DEPTH levels.

    An alias stands for the whole value of its anchor: nine nested nine times make a file of 400
    bytes stand for 387 million strings (a "billion laughs"), which validating it, or a message
    showing it, would expand. A brand file has no need of them.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            what = f"{'alias *' if isinstance(event, yaml.AliasEvent) else 'anchor &'}{event.anchor[:40]}"
            raise _Refused(event.start_mark, f"{what} not allowed (rule no_yaml_aliases): write the value out; "
                                             "anchors and aliases are not allowed in brand files")
        if self._depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels (rule max_depth): a brand file's "
                                             "settings are a few levels deep; is a bracket left open?")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_yaml(path: Path) -> Any:
    """The brand file's YAML as Python values; ConfigError if it cannot be, or is not allowed."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BRAND_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError([f"{path}: cannot be read: {e}"]) from e
    if len(data) > MAX_BRAND_FILE_BYTES:
        raise ConfigError([f"{path}: {path.stat().st_size:,} bytes, over the {MAX_BRAND_FILE_BYTES:,} (1 MiB) a brand "
                           "file may hold (rule max_size): a brand file is a few kilobytes of settings; is it the right file?"])
    try:
        return yaml.load(data.decode("utf-8"), Loader=_BrandLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: cannot be read: {e}"]) from e
    except _Refused as e:
        raise ConfigError([f"{path}: {e}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from e


def load_brand(path: Path) -> Brand:
    """Parse one brand file; raises ConfigError naming the file and every mistake in it."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: (top level): expected a mapping of keys; found {type(raw).__name__}"])
    try:
        # Lookup files are read now, beside the brand file.
        brand = Brand.model_validate(raw, context={"folder": path.parent})
    except ValidationError as e:
        # Checks across keys (precedence) name their own key path in the message.
        dedup = dict.fromkeys(
            f"{path}: {_key_path(_located(err))}: {_describe(err)}" if err["loc"] else f"{path}: {_describe(err)}"
            for err in e.errors()
        )
        raise ConfigError(list(dedup)) from None
    if brand.brand != path.stem:
        raise ConfigError([f"{path}: brand: the file's name ({path.stem}); found {brand.brand!r}"])
    return brand


def load_brands(directory: Path | None = None) -> list[Brand]:
    """Every `*.yaml` brand file in the mappings folder; all their mistakes at once."""
    directory = directory or Settings.from_env().mappings_dir
    if not directory.is_dir():
        raise ConfigError([f"{directory}: the mappings folder does not exist (BSPK_MAPPINGS_DIR)"])
    brands, problems = [], []
    for path in sorted(directory.glob("*.yaml")):
        try:
            brands.append(load_brand(path))
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)
    return brands


def brand_file_of(brand_id: str, directory: Path | None = None) -> Brand | None:
    """The brand whose file is `<brand_id>.yaml` in the mappings folder (a brand file's name is its
    brand), read alone; None if there is no such file."""
    path = (directory or Settings.from_env().mappings_dir) / f"{brand_id}.yaml"
    return load_brand(path) if BRAND_ID.match(brand_id) and path.is_file() else None
