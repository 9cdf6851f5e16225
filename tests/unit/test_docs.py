"""The README and the pages under docs/: a README a newcomer reads in five minutes, links that lead
somewhere, pages that say first what they are for, and a command-line and settings reference that
cannot fall behind the code (scripts/cli_reference writes it; this checks it)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_LIMIT_BYTES = 12_000

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def link_targets(markdown: str) -> list[str]:
    """The targets of the Markdown links in `markdown`, leaving out code blocks and code spans."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith(("#", "//"))


def load_cli_reference():
    path = ROOT / "scripts" / "cli_reference"
    loader = importlib.machinery.SourceFileLoader("cli_reference", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_reference():
    return load_cli_reference()


@pytest.fixture(scope="module")
def code_says(cli_reference) -> dict:
    """What the code says now: every command's help and every setting (one child process)."""
    return cli_reference.collect()


# --- the README -----------------------------------------------------------------------------------

def test_the_readme_is_short_enough_to_read_in_five_minutes():
    size = len(README.read_bytes())
    assert size < README_LIMIT_BYTES, (
        f"README.md is {size} bytes (limit {README_LIMIT_BYTES}): move reference material to docs/")


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / target.split("#")[0]).resolve() for target in link_targets(README.read_text())
              if is_relative(target)}
    missing = [name(page) for page in DOCS if page.resolve() not in linked]
    assert not missing, f"README.md's 'Read next' does not link {missing}"


def test_the_readme_gives_the_two_commands_that_ci_runs():
    readme = README.read_text()
    for command in ("scripts/demo", "scripts/test"):
        assert re.search(rf"^{re.escape(command)}\s+#", readme, re.M), f"README.md no longer gives `{command}`"
        assert (ROOT / command).stat().st_mode & 0o111, f"{command} is not executable"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text(), "CI no longer runs the README's test command"


# --- links ----------------------------------------------------------------------------------------

def test_link_targets_finds_links_and_skips_code():
    markdown = ("See [a](docs/a.md#part) and ![b](img/b.png \"title\"), not `[c](c.md)`.\n"
                "```\n[d](d.md)\n```\n[e]: ../e.md\n[f](https://example.org/f)\n")
    assert link_targets(markdown) == ["docs/a.md#part", "img/b.png", "https://example.org/f", "../e.md"]
    assert [t for t in link_targets(markdown) if is_relative(t)] == ["docs/a.md#part", "img/b.png", "../e.md"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_points_at_a_file_that_exists(page):
    broken = []
    for target in link_targets(page.read_text()):
        if not is_relative(target):
            continue
        path = target.split("#")[0].split("?")[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{name(page)} links to what does not exist: {broken}"


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens
    (a repeated heading's anchor gets -1, -2, ...)."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_anchors_follow_githubs_rule():
    page = "# A page\n## Follow transcripts: `callstt tail`\n## Notes\n## Notes\n```\n# not a heading\n```\n"
    assert anchors(page) == {"a-page", "follow-transcripts-callstt-tail", "notes", "notes-1"}


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_link_to_a_section_finds_it(page):
    broken = []
    for target in link_targets(page.read_text()):
        if "#" not in target or not (target.startswith("#") or is_relative(target)):
            continue
        path, anchor = target.split("#", 1)
        linked = (page.parent / path) if path else page
        if linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked.read_text()):
            broken.append(target)
    assert not broken, f"{name(page)} links to sections that do not exist: {broken}"


# --- each page starts with what it is for ---------------------------------------------------------

def opening_paragraph(markdown: str) -> str:
    """The first block after the page's title, if it is prose (not a heading, list, table, code, quote)."""
    lines = markdown.splitlines()
    if not lines or not lines[0].startswith("# "):
        return ""
    block = []
    for line in lines[1:]:
        if not line.strip():
            if block:
                break
            continue
        block.append(line)
    text = " ".join(line.strip() for line in block)
    if not text or re.match(r"(#|\||[-*+] |>|```|~~~|<|\d+[.)] )", text):
        return ""
    return text


@pytest.mark.parametrize("page", DOCS, ids=name)
def test_every_docs_page_says_first_what_it_is_for(page):
    opening = opening_paragraph(page.read_text())
    assert len(opening.split()) >= 12, (
        f"{name(page)} should begin, under its title, with a paragraph saying what it is for and who reads it")


def test_opening_paragraph_refuses_a_page_that_starts_with_a_table_or_a_heading():
    assert opening_paragraph("# T\n\nThis page says what it is for.\n\n## A\n") == "This page says what it is for."
    assert opening_paragraph("# T\n\n## Roles\n\ntext\n") == ""
    assert opening_paragraph("# T\n\n| a | b |\n|---|---|\n") == ""
    assert opening_paragraph("No title\n") == ""


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_no_page_names_a_path_of_one_machine(page):
    assert not re.search(r"(^|[\s(`'\"])/(work|home|root|Users)/", page.read_text(), re.M), (
        f"{name(page)} names a path that exists only on one machine")


# --- the generated reference ----------------------------------------------------------------------

def test_the_cli_and_settings_reference_match_the_code(cli_reference, code_says):
    stale = [name(page) for page in cli_reference.stale_pages(code_says)]
    assert not stale, f"{stale} no longer match the code: run `.venv/bin/python scripts/cli_reference`"


def test_the_reference_covers_every_command_and_setting(cli_reference, code_says):
    from callstt.streams.settings import Settings

    cli = cli_reference.current_block((ROOT / "docs" / "cli.md").read_text())
    for command in ("worker", "translator", "speaker", "publish", "tail", "replay", "bench", "call-settings set"):
        assert f"## callstt {command}\n" in cli
        assert f"Usage: callstt {command} [OPTIONS]" in cli
    settings = cli_reference.current_block((ROOT / "docs" / "settings.md").read_text())
    for field in fields(Settings):
        assert f"`{field.metadata['env'][0]}`" in settings, f"docs/settings.md lacks {field.name}"


def test_a_changed_block_is_stale(cli_reference, code_says):
    page = ROOT / "docs" / "cli.md"
    block = cli_reference.generated(code_says)[page]
    text = cli_reference.splice(page.read_text(), block)
    assert cli_reference.current_block(text) == block
    assert cli_reference.current_block(cli_reference.splice(text, block + "\nedited by hand")) != block
    with pytest.raises(ValueError):
        cli_reference.current_block("# A page without markers\n")
