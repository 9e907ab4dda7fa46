"""Run the benchmarks: ``python -m bench [NAME ...]``; figures go to stdout and bench/results.json."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

SUITES = ("acquisition", "store_alarms", "ui", "review", "board", "devices", "clinic_record", "costs", "kills")
RESULTS = Path(__file__).with_name("results.json")


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: not written yet")
                continue
            raise
        print(f"== {name}")
        started = time.perf_counter()
        figures = module.run()
        figures["_seconds"] = round(time.perf_counter() - started, 1)
        figures["_machine"] = f"{platform.machine()} {platform.python_version()} {time.strftime('%Y-%m-%d')}"
        results[name] = figures
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"figures written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
