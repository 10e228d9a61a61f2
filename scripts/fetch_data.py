"""Fetch the real volumes used by benchmarks and training into the cache (~/.cache/isovox).

Usage: .venv/bin/python scripts/fetch_data.py [colin27 mni152 ct_head]
"""

import sys

from isovox.datasets import DATASETS, fetch
from isovox.errors import IsovoxError


def main(names: list[str]) -> int:
    for name in names or DATASETS:
        try:
            print(f"{name}: {fetch(name)}")
        except IsovoxError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
