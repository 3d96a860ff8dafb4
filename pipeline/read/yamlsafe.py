"""YAML for every file we read (configs, the user config, claims): the safe loader, bounded.

A YAML file is small but what it builds need not be: aliases expand ("billion laughs": 476
bytes, 9**9 values, 158 s and 5.5 GB before this module), nesting recurses, an integer of
4301 digits or a lone surrogate fails deep inside Python, a timestamp like 2026-02-30 fails
inside the parser. Here each is one line naming the file and the key, before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_YAML_BYTES = 1_000_000  # a config or claim file is a few hundred bytes
MAX_YAML_DEPTH = 32  # nesting levels; our files use two
MAX_YAML_NODES = 10_000  # values once aliases are expanded; a config or claim file has a few dozen
MAX_YAML_DIGITS = 30  # digits of one integer; Python refuses > 4300, and no setting needs 30


class YamlProblem(Exception):
    """What is wrong with a YAML document that parses, in words, with the key it concerns."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, bounded: nesting depth is counted while composing (deep nesting is
    refused before Python's recursion limit), and dates stay text (the reader checks them:
    a YAML timestamp like 2026-02-30 would otherwise fail inside the parser, naming no key)."""

    depth = 0
    keys: list[str]

    def compose_node(self, parent, index):
        # ``index`` is the key node when composing a mapping's value: keep the path for messages
        keyed = isinstance(index, yaml.ScalarNode)
        if self.depth == 0:
            self.keys = []
        if keyed:
            self.keys.append(str(index.value)[:40])
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                where = f"{self.keys[0]}: " if self.keys else ""
                raise YamlProblem(f"{where}values nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1
            if keyed:
                self.keys.pop()


_BoundedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _check_nodes(root: yaml.Node) -> None:
    """Refuse what would eat the machine or break later, naming the key, before anything is built.

    Aliases are counted as expanded (a "billion laughs" file of 476 bytes expands to 9**9
    values: the size is computed once per shared node, never by expanding it).
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = (
        set()
    )  # nodes whose values are being counted: met again, they contain themselves
    # iterative post-order walk; ``key`` is the dotted path of mapping keys for messages
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, key, done = stack.pop()
        if id(node) in sizes:
            continue
        if not done and id(node) in visiting:
            where = f"{key}: " if key else ""
            raise YamlProblem(
                f"{where}a value contains itself (an alias *name inside its own &name); "
                "write the values out"
            )
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = str(k.value)[:40] if isinstance(k, yaml.ScalarNode) else "?"
                children += [(k, key), (v, f"{key}.{name}" if key else name)]
        elif isinstance(node, yaml.SequenceNode):
            children = [(v, key) for v in node.value]
        if not done:
            if isinstance(node, yaml.ScalarNode):
                _check_scalar(node, key)
                sizes[id(node)] = 1
                continue
            visiting.add(id(node))
            stack.append((node, key, True))
            stack.extend((c, k, False) for c, k in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c, _ in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            where = f" under {key!r}" if key else ""
            raise YamlProblem(
                f"more than {MAX_YAML_NODES} values{where} once its aliases (*name) are "
                "expanded; write the values out"
            )


def _check_scalar(node: yaml.ScalarNode, key: str) -> None:
    where = f"{key}: " if key else ""
    text = node.value
    if node.tag == "tag:yaml.org,2002:int":
        body = text.lstrip("+-")
        body = body[2:] if body[:2].lower() in ("0x", "0b", "0o") else body
        digits = sum(ch.isalnum() for ch in body)  # hex and binary digits too
        if digits > MAX_YAML_DIGITS:
            raise YamlProblem(
                f"{where}a whole number of {digits} digits is too large for any setting"
            )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise YamlProblem(
            f"{where}text holds a lone surrogate (a \\uD800-\\uDFFF escape, which is no "
            "character); remove it"
        ) from None


def parse_yaml(text: str, path: Path | str, error: type[Exception], hint: str = "") -> Any:
    """YAML with the bounded safe loader; any problem is one ``error`` line naming the file
    (and the line, or the key)."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_nodes(root)
        return loader.construct_document(root)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise error(f"{path}: not valid YAML{where}{hint}") from e
    except YamlProblem as e:
        raise error(f"{path}: {e}") from None
    except (
        ValueError,
        OverflowError,
        RecursionError,
    ) as e:  # a value the constructors cannot build
        raise error(
            f"{path}: not valid YAML ({e.__class__.__name__}: {str(e)[:100]}){hint}"
        ) from None
    finally:
        loader.dispose()


def read_text_bounded(path: Path, limit: int = MAX_YAML_BYTES) -> str | None:
    """The file's text, or None when it holds more than ``limit`` bytes. Reads at most
    ``limit + 1`` bytes, so a device or pipe (``/dev/zero``, whose size says 0) cannot fill memory.
    Raises OSError and UnicodeDecodeError as reading does."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return None
    return data.decode("utf-8-sig")
