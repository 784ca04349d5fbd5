"""Run every benchmark in turn, each in its own process: ``python bench/run_all.py``.

``python bench/run_all.py steps resume`` runs only those. Exit status 1 if one crashed
(a target not met is reported in the output, not as a failure).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["steps", "resume", "memory", "pool", "queues", "queries", "dbos_peer"]


def main(argv: list[str]) -> int:
    chosen = argv or BENCHES
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {BENCHES}")
        return 2
    crashed: list[str] = []
    started = time.monotonic()
    for i, name in enumerate(chosen, 1):
        print(f"== [{i}/{len(chosen)}] python bench/{name}.py", flush=True)
        t = time.monotonic()
        code = subprocess.run([sys.executable, str(HERE / f"{name}.py")], check=False).returncode
        print(f"== [{i}/{len(chosen)}] {name}: exit {code} after {time.monotonic() - t:.0f} s",
              flush=True)
        if code != 0:
            crashed.append(name)
    print(f"== all done in {time.monotonic() - started:.0f} s"
          + (f"; crashed: {', '.join(crashed)}" if crashed else ""), flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
