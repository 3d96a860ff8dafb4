"""The documents say what the repository holds: links resolve, modules and commands exist.

Reads README.md, docs/*.md and the folder READMEs as text; imports only the argument parser
and ``Params`` (no analysis), so the whole file runs in well under a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from pipeline.config import Params

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FOLDER_READMES = [
    ROOT / p
    for p in ("data/README.md", "outputs/README.md", "aoi/README.md", "aoi/boundaries/README.md")
]
LINKED = DOCS + [p for p in FOLDER_READMES if p.is_file()]

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
INLINE_LINK = re.compile(r"\[(?:[^\]\\\n]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def links(path: Path) -> list[str]:
    text = without_code_blocks(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps only its text
    text = re.sub(r"[`*_~]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(without_code_blocks(path.read_text(encoding="utf-8"))):
        s = slug(title)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def section(text: str, title: str) -> str:
    """The body of ``## title`` up to the next second-level heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


# --------------------------------------------------------------------------- links


def test_the_reference_documents_exist():
    names = {p.name for p in DOCS}
    assert {"method.md", "data.md", "errors.md", "performance.md"} <= names


@pytest.mark.parametrize("doc", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(doc: Path):
    found = links(doc)
    problems = []
    for target in found:
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not problems, f"{doc.relative_to(ROOT)}: " + "; ".join(problems)


def test_link_checker_sees_every_kind_of_link(tmp_path):
    """The checker itself: inline, reference-style and anchor links are found; code is not."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "# A b\n[t](a.md) [`c`](../b.py#x) <https://e.org>\n[r]: ref.md\n"
        "```\n[not](code.md)\n```\n",
        encoding="utf-8",
    )
    assert sorted(links(doc)) == ["../b.py#x", "a.md", "ref.md"]
    assert anchors(doc) == {"a-b"}
    assert (
        slug("Scale and speed") == "scale-and-speed"
        and slug("`Params`, the keys") == "params-the-keys"
    )


def test_nothing_points_at_the_shared_research_folder():
    for doc in LINKED:
        assert "shared/research" not in doc.read_text(encoding="utf-8"), doc.relative_to(ROOT)


# --------------------------------------------------------------------------- layout


def _modules() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "pipeline").rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_layout_lists_every_module_once_and_nothing_else():
    layout = section(README.read_text(encoding="utf-8"), "Layout")
    items = re.findall(r"^- `(pipeline/[^`]+\.py)`: \S", layout, re.M)
    duplicates = sorted({m for m in items if items.count(m) > 1})
    assert not duplicates, f"listed more than once: {duplicates}"
    modules = _modules()
    assert not modules - set(items), (
        f"modules missing from README 'Layout': {sorted(modules - set(items))}"
    )
    assert not set(items) - modules, (
        f"README 'Layout' lists modules that do not exist: {sorted(set(items) - modules)}"
    )
    named = set(re.findall(r"`(pipeline/[^`\s]*)`", layout))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README 'Layout' names paths that do not exist: {missing}"


# --------------------------------------------------------------------------- commands


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands() -> dict[str, argparse.ArgumentParser]:
    """'run', 'extract', ..., and nested ones as 'sites validate'."""
    out = {}
    for name, sp in _subparsers(build_parser()).items():
        nested = _subparsers(sp)
        out.update({f"{name} {n}": p for n, p in nested.items()} if nested else {name: sp})
    return out


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


COMMON_FLAGS = {"--help", "--debug", "--quiet"}


def _command_of(words: list[str]) -> str | None:
    """The subcommand a 'nightlights ...' command line names, or None."""
    if len(words) < 2 or words[0] != "nightlights":
        return None
    two = " ".join(words[1:3])
    return two if two in _commands() else words[1]


def _mentions(doc: Path) -> list[tuple[str, bool]]:
    """Command lines, each with whether it is whole: code-block lines (indented lines continue
    the one above) are; inline code may be a fragment ('--cache-dir DIR opts in')."""
    text = doc.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in FENCE.findall(text):
        for line in block.splitlines()[1:-1]:
            if line.startswith((" ", "\t")) and lines and lines[-1].startswith("nightlights "):
                lines[-1] += " " + line.strip()
            elif line.startswith("nightlights "):
                lines.append(line)
    inline = re.findall(r"`(nightlights [a-z][^`]*)`", without_code_blocks(text))
    return [(s, True) for s in lines] + [
        (s, False) for s in inline if re.match(r"nightlights [a-z-]+( |$)", s)
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_and_flag_shown_exists(doc: Path):
    commands = _commands()
    problems = []
    for line, whole in _mentions(doc):
        line = line.split(" #")[0]
        cmd = _command_of(line.split())
        if cmd not in commands:
            problems.append(f"{line!r}: no command {cmd!r}")
            continue
        unknown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)) - _long_flags(commands[cmd])
        if unknown:
            problems.append(f"{line!r}: {cmd} has no {sorted(unknown)}")
        if whole and not re.search(
            r"[\[\]|<>]|\.\.\.|…", line
        ):  # a complete example: it must parse
            try:
                build_parser().parse_args(shlex.split(line)[1:])
            except SystemExit as e:
                if e.code != 0 or "--help" not in line:
                    problems.append(f"{line!r}: does not parse (exit {e.code})")
    assert not problems, "; ".join(problems)


def test_the_synopsis_lists_every_flag_of_every_command():
    block = FENCE.search(section(README.read_text(encoding="utf-8"), "Command line"))
    assert block, "README 'Command line' has no code block"
    synopsis: dict[str, set[str]] = {}
    cmd = None
    for line in block.group(0).splitlines()[1:-1]:
        if line.startswith("nightlights "):
            cmd = _command_of(line.split())
            synopsis.setdefault(cmd, set())
        synopsis[cmd] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))
    commands = _commands()
    assert set(synopsis) == set(commands), (
        f"synopsis commands {sorted(synopsis)} vs {sorted(commands)}"
    )
    for name, parser in commands.items():
        missing = _long_flags(parser) - COMMON_FLAGS - synopsis[name]
        assert not missing, f"README synopsis of '{name}' lacks {sorted(missing)}"


def test_make_targets_named_in_the_readme_exist():
    targets = set(
        re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    )
    named = set(re.findall(r"`make ([a-z]+)`", README.read_text(encoding="utf-8")))
    named |= set(re.findall(r"^make ([a-z]+)", README.read_text(encoding="utf-8"), re.M))
    assert named and named <= targets, sorted(named - targets)


# --------------------------------------------------------------------------- parameters


def test_parameter_table_lists_exactly_the_params_fields():
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    body = re.search(r"^## Parameters\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert body, "docs/method.md has no '## Parameters' section"
    rows = re.findall(r"^\| `([a-z_0-9]+)` \|", body.group(1), re.M)
    fields = [f.name for f in dataclasses.fields(Params)]
    assert sorted(rows) == sorted(fields)
    defaults = {f.name: f.default for f in dataclasses.fields(Params)}
    for name, shown in re.findall(r"^\| `([a-z_0-9]+)` \| `([^`]+)` \|", body.group(1), re.M):
        value = defaults[name]
        if not isinstance(value, tuple) or len(value) < 4:  # long tuples are abbreviated
            assert shown == str(list(value) if isinstance(value, tuple) else value), name
