"""Every relative link of the Markdown a user reads (README.md, docs/) points at a file that exists,
and every ``#anchor`` at a heading of that file, as GitHub renders it (a moved section or a removed
results folder must not leave a dead link behind).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_the_slug_is_githubs():
    assert slug("Re-checked after the eigensolver fix") == "re-checked-after-the-eigensolver-fix"
    assert slug("Dice at 16 × 16: no power law") == "dice-at-16--16-no-power-law"
    assert slug("AtrialFibrillation at the paper's width") == "atrialfibrillation-at-the-papers-width"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    dead = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target}: no heading with that anchor in {file.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)}: " + "; ".join(dead)


def test_the_link_pattern_finds_the_links():
    """The test above reads links at all: README.md and docs/ hold more than 50 relative ones."""
    found = [t for p in PAGES for t in LINK.findall(FENCE.sub("", p.read_text())) if not re.match(r"[a-z]+:", t)]
    assert len(found) > 50 and any("#" in t for t in found)
