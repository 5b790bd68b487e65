"""Tables written into a document between two markers, leaving the rest of it as it is.

The study scripts own a region each: study.py of docs/results.md, paper_claims.py and
compound_study.py of docs/earlier_results.md; the prose around them is written by hand.
"""

from __future__ import annotations

from pathlib import Path


def write_between(doc: Path, begin: str, end: str, text: str, add_markers: bool = True) -> Path:
    """Replace what stands between ``begin`` and ``end`` in ``doc`` with ``text``. Without the
    markers, ``add_markers`` appends them (creating the file if need be); otherwise it is an error."""
    old = doc.read_text() if doc.exists() else ""
    if begin not in old or end not in old:
        if not add_markers:
            raise SystemExit(f"{doc}: the markers {begin} ... {end} are missing")
        old = (old or "# Results\n") + f"\n{begin}\n{end}\n"
    before, rest = old.split(begin, 1)
    after = rest.split(end, 1)[1]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{before}{begin}\n{text}\n{end}{after}")
    return doc
