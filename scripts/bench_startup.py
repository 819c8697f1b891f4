"""How long the commands take to start: wall and CPU time of airmic-send --help,
airmic-receive --help, airmic-send --discover and airmic-send pair (to its error, with no
receiver), against a bare `python -c "import numpy"` in the same run. Medians over --runs
runs each. Prints a Markdown table and writes JSON.

The discovery commands listen on 127.0.0.1 only, for their whole listening time (2 s):
their wall time is mostly that wait, their CPU time is what they cost.

    .venv/bin/python scripts/bench_startup.py [--runs 7] [--json out/bench_startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
    "airmic-send --help": [BIN / "airmic-send", "--help"],
    "airmic-receive --help": [BIN / "airmic-receive", "--help"],
    "airmic-send --discover": [BIN / "airmic-send", "--discover", "--interface", "127.0.0.1"],
    "airmic-send pair (no receiver)": [
        BIN / "airmic-send",
        "pair",
        "123456",
        "--interface",
        "127.0.0.1",
    ],
}


def run_once(line: list, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run (the child's user and system time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(line, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path("out/bench_startup.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as home:  # no pairings of the user's
        env = {**os.environ, "XDG_CONFIG_HOME": home}
        for name, line in COMMANDS.items():
            run_once(line, env)  # warm the file cache
            runs = [run_once(line, env) for _ in range(args.runs)]
            results[name] = {
                "wall_s": statistics.median(r[0] for r in runs),
                "cpu_s": statistics.median(r[1] for r in runs),
            }
            print(f"  {name}: {results[name]['wall_s']:.3f} s", file=sys.stderr)
    numpy = results['python -c "import numpy"']
    print(f"\n{args.runs} runs each, medians\n")
    print("| command | wall (s) | CPU (s) | wall / numpy's |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        ratio = r["wall_s"] / numpy["wall_s"]
        print(f"| `{name}` | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {ratio:.1f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
