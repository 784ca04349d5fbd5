"""Run every benchmark in turn: ``python bench/run_all.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["steps.py", "resume.py", "memory.py", "dbos_peer.py"]


def main() -> int:
    failed = 0
    for i, name in enumerate(BENCHES, 1):
        print(f"== [{i}/{len(BENCHES)}] {name}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
