"""Copy a generated table file into docs/lab-study.md between its markers.

    python docs/lab-study/embed.py NAME FILE [--level 3] [--doc docs/lab-study.md]

Replaces the lines between ``<!-- NAME:begin ... -->`` and ``<!-- NAME:end -->`` with the
contents of FILE up to (not including) its ``## Per run`` section, and turns FILE's ``##``
headings into level ``--level`` headings so they nest under the doc's section. Exits with an error
naming the doc and the marker when either marker is missing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("file", type=Path)
    parser.add_argument("--level", type=int, default=3, help="heading level of FILE's sections")
    parser.add_argument("--doc", type=Path, default=Path("docs/lab-study.md"))
    args = parser.parse_args(argv)
    text = args.doc.read_text()
    pattern = re.compile(rf"(<!-- {re.escape(args.name)}:begin[^\n]*-->\n)(.*?)(<!-- "
                         rf"{re.escape(args.name)}:end -->)", re.S)
    if not pattern.search(text):
        print(f"embed.py: {args.doc}: no '<!-- {args.name}:begin -->' ... "
              f"'<!-- {args.name}:end -->' block", file=sys.stderr)
        return 2
    body = args.file.read_text().split("\n## Per run")[0].rstrip() + "\n"
    body = re.sub(r"^## ", "#" * args.level + " ", body, flags=re.M)
    args.doc.write_text(pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(3), text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
