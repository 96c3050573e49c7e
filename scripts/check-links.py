"""Checks the links between the README and the guide's pages: every
relative link names a file that exists, and every #anchor a heading of that
file (GitHub's and mdBook's ids: lowercase, spaces to hyphens, other
punctuation dropped). Exits non-zero with the broken links listed."""

import re
import sys
from pathlib import Path

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def anchors(path: Path) -> set[str]:
    ids, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        m = None if fence else HEADING.match(line)
        if m:
            text = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            ids.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return ids


def broken(md: Path) -> list[str]:
    out, fence = [], False
    for n, line in enumerate(md.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                out.append(f"{md}:{n}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                out.append(f"{md}:{n}: {target}: no such heading")
    return out


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    problems = [p for md in pages for p in broken(md)]
    summary = (root / "docs" / "SUMMARY.md").read_text()
    for md in sorted((root / "docs").glob("*.md")):
        if md.name != "SUMMARY.md" and f"({md.name})" not in summary:
            problems.append(f"{md}: not in docs/SUMMARY.md")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"links checked in {len(pages)} pages: {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
