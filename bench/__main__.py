"""`make bench`: every benchmark, each printing its own table."""

from __future__ import annotations

import importlib
import sys

MODULES = ["bench.bench_core", "bench.bench_sandbox", "bench.bench_widgets", "bench.bench_sync"]


def main() -> int:
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"({name} is not present yet)", file=sys.stderr)
            continue
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
