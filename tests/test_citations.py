"""Comments and docstrings cite the repository's own documents, and the citations resolve.

* Every ``docs/X.md §N.N`` mentioned anywhere in src/, tests/ and bench/ names a file that
  exists and has a heading whose text starts with ``N.N`` (``## 1. ...``, ``### 3.13.1a ...``).
* No source file names a ``.md`` file that is not in the repository, nor cites the old notes by
  number (``reference 3.8``, ``reference/...``, ``design.md``, ``notes/...`` lived outside it).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("src", "tests", "bench")

#: The notes the code once cited by number ("reference 3.8") lived outside the repository.
OLD_NOTES = re.compile(r"\breference\s+\d+\.\d+|reference/[\w.-]+|notes/[\w.-]+")

CITATION = re.compile(r"(docs/[\w.-]+\.md)\s*§\s*(\d+(?:\.\d+)*[a-z]?)")
MD_NAME = re.compile(r"[\w./-]*[\w-]\.md\b")
HEADING = re.compile(r"^#{1,6}\s+(\S+)", re.MULTILINE)


def _files(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for name in paths:
        p = ROOT / name
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*.py") if ".venv" not in f.parts))
        elif p.exists():
            out.append(p)
    return out


def _sections(doc: Path) -> set[str]:
    """The section numbers a document's headings start with (``1.`` -> ``1``)."""
    return {m.group(1).rstrip(".") for m in HEADING.finditer(doc.read_text(encoding="utf-8"))}


def _md_exists(name: str, source: Path) -> bool:
    return any(
        (base / name).is_file() for base in (ROOT, ROOT / "docs", source.parent)
    )


def test_every_section_citation_resolves() -> None:
    sections: dict[str, set[str]] = {}
    bad: list[str] = []
    for f in _files(SCANNED):
        text = f.read_text(encoding="utf-8")
        for m in CITATION.finditer(text):
            doc, number = m.group(1), m.group(2)
            path = ROOT / doc
            if not path.is_file():
                bad.append(f"{f.relative_to(ROOT)}: {doc} does not exist")
                continue
            if doc not in sections:
                sections[doc] = _sections(path)
            if number not in sections[doc]:
                bad.append(f"{f.relative_to(ROOT)}: {doc} has no section {number}")
    assert not bad, "\n".join(bad)


def test_sources_name_only_documents_in_the_repository() -> None:
    bad: list[str] = []
    for f in _files(SCANNED):
        if f == Path(__file__):
            continue
        text = f.read_text(encoding="utf-8")
        for m in MD_NAME.finditer(text):
            name = m.group(0)
            if not _md_exists(name, f):
                bad.append(f"{f.relative_to(ROOT)}: {name}")
        bad.extend(f"{f.relative_to(ROOT)}: {m.group(0)}" for m in OLD_NOTES.finditer(text))
    assert not bad, "\n".join(bad)


def test_cited_protocol_sections_exist() -> None:
    # The numbering other modules' comments are being rewritten to (docs/protocol.md and
    # docs/gear-compat.md keep the section numbers of the notes they replace).
    protocol = _sections(ROOT / "docs" / "protocol.md")
    wanted = {"1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "2.1", "2.2", "2.3", "4.1", "4.2", "5.1"}
    wanted |= {f"3.{i}" for i in range(1, 19)}
    assert wanted <= protocol, sorted(wanted - protocol)
    compat = _sections(ROOT / "docs" / "gear-compat.md")
    wanted = {"1", "2", "3", "4", "5", "5.5", "5.6", "6", "7", "8"}
    wanted |= {f"3.{i}" for i in range(1, 14)} | {"3.13.1", "3.13.1a", "3.13.2", "3.13.3"}
    wanted |= {f"6.{i}" for i in range(1, 17)}
    assert wanted <= compat, sorted(wanted - compat)
