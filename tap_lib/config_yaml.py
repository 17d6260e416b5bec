"""Reading an environment file as untrusted input, and echoing what it held in errors.

Size, encoding, nesting, node count, anchors/aliases and merge keys are bounded or refused (a
1 KB alias bomb expands to gigabytes; plain settings files need none of them), and a key set
twice is an error rather than last-wins: a copied prod file with a trailing `protected: false`
must not quietly turn protection off. Error text stays a few hundred characters and never
shows the value of a setting whose name looks secret.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import ConfigError
# Re-exported: callers import these from config_yaml and config.
from .redaction import SECRET_NAME, SHOWN_CHARS, label, shorten, shown  # noqa: F401

# The shipped files are about 1 KB and nest 3 levels.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 20
MAX_NODES = 20_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedKey(yaml.YAMLError):
    """A mapping key YAML accepts but an environment file may not hold: set twice, or the
    merge key `<<`. `field` is its dotted path; `lines` are 1-based."""

    def __init__(self, problem: str, field: str, lines: tuple[int, ...]):
        super().__init__(problem)
        self.problem, self.field, self.lines = problem, field, lines


def read_settings_file(path: Path) -> dict:
    """The mapping an environment file holds, read as untrusted input: at most MAX_FILE_BYTES
    of UTF-8, valid YAML without anchors, aliases, merge keys or repeated keys, nested at most
    MAX_DEPTH deep."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or type(exc).__name__}",
                          file=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"file is larger than {MAX_FILE_BYTES // 1024} KiB; an environment "
                          "file is a few dozen lines of YAML", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                          f"(line {line}); save the file as UTF-8", file=str(path)) from None
    try:
        data = load_yaml(text)
    except RefusedKey as exc:
        raise ConfigError(exc.problem, file=str(path), field=label(exc.field)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {shorten(str(exc), 600)}", file=str(path)) from None
    except ValueError:  # int() refuses integers of more than 4300 digits
        raise ConfigError("holds a number too long to read (more than 4300 digits)",
                          file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping of settings, not a "
                          f"{type(data).__name__}", file=str(path))
    return data


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and bounds nesting and the node count, so
    a small file can neither expand without bound nor exhaust the recursion limit."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name, <<) are not allowed here; "
                "write each value out", event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """One YAML document, composed under the bounds above and checked for refused keys
    before anything is constructed from it."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_keys(loader, node, ())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_keys(loader: _BoundedLoader, node: Any, path: tuple[str, ...]) -> None:
    """Refuse merge keys and keys set twice in every mapping (nesting is bounded by
    MAX_DEPTH, so the recursion is too). Keys are compared as the dict would hold them, so
    `1` and `0x1`, or `yes` and `true`, are the same key."""
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(loader, item, (*path, f"[{i}]"))
        return
    if not isinstance(node, MappingNode):
        return
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        where = (*path, key_node.value if isinstance(key_node, ScalarNode) else "?")
        if key_node.tag == MERGE_TAG:
            raise RefusedKey(f"the YAML merge key '<<' at line {line} is not allowed: it copies "
                             "settings from elsewhere out of sight; write each setting out",
                             _dotted(where), (line,))
        if isinstance(key_node, ScalarNode):  # scalars construct to hashable keys
            key = loader.construct_object(key_node)
            if key in first:
                raise RefusedKey(f"set twice, at line {first[key]} and line {line}; YAML would "
                                 "silently keep only the last - remove one", _dotted(where),
                                 (first[key], line))
            first[key] = line
        _check_keys(loader, value_node, where)


def _dotted(path: tuple[str, ...]) -> str:
    """('vpc', 'az_count') -> 'vpc.az_count'; ('stacks', '[0]', 'env') -> 'stacks[0].env'."""
    return ".".join(map(str, path)).replace(".[", "[")
