"""The documentation holds together: links resolve, named commands and options exist, the README stays short.

Covers README.md, docs/*.md, benchmarks/README.md and CHANGELOG.md: every relative
link points at an existing file (and an ``#anchor`` into a Markdown file at one of
its headings, slugged as GitHub does); every ``spacy-bioner SUBCOMMAND`` in code
exists (its ``--help`` exits 0) and every option written after it is one of that
subcommand's options.
"""
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest
import typer
from typer.testing import CliRunner

from spacy_bioner.cli import app

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 150
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
INLINE_CODE_SPAN = re.compile(r"`([^`]+)`")  # may wrap onto the next line
COMMAND = re.compile(r"(?:spacy-bioner|python -m spacy_bioner)\s+([a-z][a-z0-9-]*)(.*)")
OPTION = re.compile(r"^--?[A-Za-z][\w-]*$")


def doc_files() -> List[Path]:
    files = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", ROOT / "CHANGELOG.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    return [path for path in files if path.exists()]


def split_code(text: str) -> Tuple[List[str], List[str]]:
    """(prose lines, code lines): fenced blocks are code, the rest prose."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2… as on GitHub)."""
    prose, _ = split_code(path.read_text(encoding="utf8"))
    seen: Dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(path: Path) -> Iterator[str]:
    """Link targets in prose that are not web addresses."""
    prose, _ = split_code(path.read_text(encoding="utf8"))
    for line in prose:
        line = INLINE_CODE.sub("", line)
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                yield target


def broken_links(path: Path) -> List[str]:
    """What is wrong with each relative link of a file (empty when all resolve)."""
    problems = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


def command_lines(path: Path) -> Iterator[Tuple[str, str]]:
    """(subcommand, rest of the command) for each ``spacy-bioner SUB ...`` in code."""
    prose, code = split_code(path.read_text(encoding="utf8"))
    joined, pending = [], ""
    for line in code:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    snippets = [line.split(" #")[0] for line in joined]
    snippets += [span.replace("\n", " ") for span in INLINE_CODE_SPAN.findall("\n".join(prose))]
    for snippet in snippets:
        for part in re.split(r"&&|;|\|\|", snippet):
            match = COMMAND.search(part)
            if match:
                yield match.group(1), match.group(2)


def named_options(rest: str) -> List[str]:
    """Options written in a command line, without config overrides (``--paths.train``)."""
    options = []
    for token in rest.split():
        token = token.strip("[](),`'\"")
        token = token.split("=")[0]
        if OPTION.match(token) and "." not in token:
            options.append(token)
    return options


def documented_commands() -> Dict[str, Set[str]]:
    """Subcommand → the options the docs write after it."""
    commands: Dict[str, Set[str]] = {}
    for path in doc_files():
        for sub, rest in command_lines(path):
            commands.setdefault(sub, set()).update(named_options(rest))
    return commands


def cli_options() -> Dict[str, Set[str]]:
    """Subcommand → its option names, from the typer app."""
    group = typer.main.get_command(app)
    return {name: {opt for param in command.params for opt in param.opts + param.secondary_opts}
            for name, command in group.commands.items()}


DOCUMENTED = documented_commands()


def test_the_docs_exist():
    names = {path.relative_to(ROOT).as_posix() for path in doc_files()}
    assert {"README.md", "docs/README.md", "benchmarks/README.md", "CHANGELOG.md"} <= names
    assert len(DOCUMENTED) >= 10, sorted(DOCUMENTED)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_the_index():
    index = ROOT / "docs" / "README.md"
    linked = {(index.parent / target.partition("#")[0]).resolve() for target in relative_links(index)}
    pages = {page.resolve() for page in (ROOT / "docs").glob("*.md") if page != index}
    assert pages - linked == set()


@pytest.mark.parametrize("sub", sorted(DOCUMENTED))
def test_named_subcommand_exists(sub):
    result = CliRunner().invoke(app, [sub, "--help"])
    assert result.exit_code == 0, f"spacy-bioner {sub} --help: {result.output}"


@pytest.mark.parametrize("sub", sorted(DOCUMENTED))
def test_named_options_exist(sub):
    known = cli_options().get(sub, set())
    assert sorted(DOCUMENTED[sub] - known - {"--help"}) == []


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the guide belongs in docs/"


def test_github_slugs():
    assert github_slug("bench_train: training and prediction vs Hugging Face") == \
        "bench_train-training-and-prediction-vs-hugging-face"
    assert github_slug("`metrics.json`") == "metricsjson"
    assert github_slug("GPT-2 and other decoders") == "gpt-2-and-other-decoders"
    assert github_slug("Sweep: NCBI-disease grid") == "sweep-ncbi-disease-grid"


def test_a_broken_link_and_a_made_up_command_are_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# Here\n", encoding="utf8")
    page.write_text("[ok](there.md#here) [gone](missing.md) [bad anchor](there.md#nowhere)\n\n"
                    "```bash\nspacy-bioner frobnicate x\nspacy-bioner convert a b --no-such-flag\n```\n",
                    encoding="utf8")
    assert broken_links(page) == ["missing.md: no such file", "there.md#nowhere: no heading #nowhere in there.md"]
    commands = dict(command_lines(page))
    assert CliRunner().invoke(app, ["frobnicate", "--help"]).exit_code != 0
    assert "--no-such-flag" not in cli_options()["convert"] and named_options(commands["convert"]) == ["--no-such-flag"]
