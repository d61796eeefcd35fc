"""The manual holds together: a short README, headings that name one place each, links that land."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANUAL = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED_FROM = [*MANUAL, ROOT / "CHANGELOG.md", ROOT / "bench" / "RESULTS.md"]

_HEADING = re.compile(r"(#{1,6})\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> list[tuple[int, str]]:
    """The numbered lines of ``path`` outside fenced code blocks (a ``#`` there is a shell comment)."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _headings(path: Path) -> list[tuple[int, str]]:
    return [(number, match.group(2)) for number, line in _prose(path) if (match := _HEADING.match(line))]


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, link text kept, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_anchor_follows_github() -> None:
    assert anchor("Checking that it works") == "checking-that-it-works"
    assert anchor("`backup`: a copy while it runs") == "backup-a-copy-while-it-runs"
    assert anchor("Reading the file with sqlite3 and [Datasette](https://datasette.io)") == (
        "reading-the-file-with-sqlite3-and-datasette"
    )


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; the manual's detail belongs in docs/"


def test_no_two_headings_share_their_text() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in MANUAL:
        for number, heading in _headings(path):
            places[heading].append(f"{path.relative_to(ROOT)}:{number}")
    assert {heading: where for heading, where in places.items() if len(where) > 1} == {}


def test_relative_links_and_anchors_resolve() -> None:
    anchors = {path: {anchor(heading) for _, heading in _headings(path)} for path in MANUAL}
    broken, checked = [], 0
    for path in LINKED_FROM:
        for number, line in _prose(path):
            for match in _LINK.finditer(line):
                target = match.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
                    continue
                checked += 1
                file_part, _, fragment = target.partition("#")
                linked = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where} (no such file)")
                elif fragment and linked.suffix == ".md":
                    known = anchors.get(linked) or {anchor(heading) for _, heading in _headings(linked)}
                    if fragment not in known:
                        broken.append(f"{where} (no such heading)")
    assert checked > 50, "the link pattern stopped matching the manual's links"
    assert broken == []
