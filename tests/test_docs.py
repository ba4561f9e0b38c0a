"""The README and docs/ link to each other: every relative link and image in
README.md and docs/**/*.md names a file that exists, and every #anchor a
heading of the page it points into."""

import glob
import os
import re

import pytest

from conftest import ROOT

PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(
    os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
# [text](target) and ![alt](target); the target ends at a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
  """`text` without its code: fenced blocks, indented blocks (four spaces
  after a blank line or another such line) and `code spans`, where
  brackets and parentheses are code, not links."""
  kept, fenced, indented = [], False, False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if fenced:
      continue
    if line.startswith("    ") and (indented or not kept or not kept[-1]):
      indented = True
      continue
    indented = indented and not line.strip()
    kept.append(CODE_SPAN.sub("", line))
  return "\n".join(kept)


def slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped
  (hyphens and underscores kept), spaces as hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def anchors(path: str) -> set:
  """The anchors of a Markdown page's headings (a repeated heading gets
  -1, -2, ... as on GitHub)."""
  found = set()
  for line in prose(open(path, encoding="utf-8").read()).splitlines():
    match = re.match(r"#{1,6} (.*)", line)
    if match:
      name = base = slug(match.group(1))
      count = 0
      while name in found:
        count += 1
        name = f"{base}-{count}"
      found.add(name)
  return found


def links(path: str) -> list:
  """Every relative link target of a page, as written."""
  text = prose(open(path, encoding="utf-8").read())
  return [target for target in LINK.findall(text)
          if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_pages_are_found():
  names = {os.path.relpath(p, ROOT) for p in PAGES}
  assert {"README.md", os.path.join("docs", "flags.md"),
          os.path.join("docs", "rest_api.md"),
          os.path.join("docs", "performance.md")} <= names
  assert sum(len(links(p)) for p in PAGES) > 50


@pytest.mark.parametrize("path", PAGES,
                         ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_every_relative_link_and_image_resolves(path):
  broken = []
  for target in links(path):
    file_part, _, anchor = target.partition("#")
    linked = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
              if file_part else path)
    if not os.path.exists(linked):
      broken.append(f"{target}: no such file")
    elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
      broken.append(f"{target}: no heading #{anchor}")
  assert not broken, f"{os.path.relpath(path, ROOT)}: {broken}"


def test_every_doc_is_linked_from_the_readme_and_links_back():
  """A page under docs/ is reached from the README (directly or through
  docs/ablations.md for the studies), and leads back to it."""
  readme = os.path.join(ROOT, "README.md")
  reached = set()
  for page in (readme, os.path.join(ROOT, "docs", "ablations.md")):
    for target in links(page):
      reached.add(os.path.normpath(os.path.join(
          os.path.dirname(page), target.partition("#")[0])))
  for path in PAGES:
    if path == readme or os.path.basename(path) == "results.md":
      continue
    assert path in reached, f"{os.path.relpath(path, ROOT)}: not linked"
    back = {os.path.normpath(os.path.join(os.path.dirname(path),
                                          t.partition("#")[0]))
            for t in links(path)}
    assert readme in back, f"{os.path.relpath(path, ROOT)}: no link back"
