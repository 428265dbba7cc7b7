"""docs/design.md is the repo's design document: every reference to it names one of its sections, and
nothing points at a design file outside the repo."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["src/dsrbody", "configs", "docs", "tests", "benchmarks", "README.md", "Makefile"]


def _texts():
    for place in PLACES:
        p = ROOT / place
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        for f in files:
            if f.suffix in (".py", ".md", ".yaml", ".yml", "") and "__pycache__" not in f.parts:
                try:
                    yield f, f.read_text()
                except UnicodeDecodeError:
                    continue


def test_references_name_sections():
    design = (ROOT / "docs" / "design.md").read_text()
    sections = [line[3:].strip() for line in design.splitlines() if line.startswith("## ")]
    assert {"Layers", "A training step", "Cameras", "Losses", "Where to add things"} <= set(sections)
    bad, count = [], 0
    for f, text in _texts():
        if f.name == Path(__file__).name:
            continue
        for m in re.finditer(r"docs/design\.md,\s+([A-Z][\w\s-]*)", text):
            count += 1
            ref = " ".join(m.group(1).split())
            if not any(ref.startswith(s) or s.startswith(ref) for s in sections):
                bad.append(f"{f.relative_to(ROOT)}: {ref}")
        if re.search(r"\bDESIGN\b", text) and f.name != "design.md":
            bad.append(f"{f.relative_to(ROOT)}: refers to DESIGN")
    assert bad == [] and count > 40
