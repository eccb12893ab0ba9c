"""Start-up cost of one-shot commands: `tradeops chat -c /help`, `chat -c /positions` and `doctor`,
each a whole new process, median of 5 (targets: /help <= 1.0 s, /positions <= 1.5 s).

Wall time depends on how loaded the machine is, so the import cost is also printed from
``python -X importtime`` (CPU spent importing, summed over the top-level imports; and the heaviest
top-level modules), with which of matplotlib, mplfinance, pandas, langgraph and openai the command
loaded. ``--compare DIR`` measures another checkout with its own .venv (e.g. ``/work/main``) in the
same run, for before/after figures on the same load. Every run uses a fresh temporary data dir on
the offline replay venues (no LLM settings). Run from the repo root:
``.venv/bin/python benchmarks/startup.py [--runs 5] [--compare DIR]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "chat -c /help": ["chat", "-c", "/help"],
    "chat -c /positions": ["chat", "-c", "/positions"],
    "doctor": ["doctor"],
}
TARGETS = {"chat -c /help": 1.0, "chat -c /positions": 1.5}
HEAVY = ("matplotlib", "mplfinance", "pandas", "langgraph", "openai")
# Runs the installed entry point (bot.cli:app) as the `tradeops` script does.
ENTRY = "import sys; from bot.cli import app; sys.argv[0] = 'tradeops'; sys.exit(app())"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_") and k != "OPENAI_API_KEY"}
    env["TRADEOPS_DATA_DIR"] = str(data_dir)
    return env


def _python(checkout: Path) -> str:
    return str(checkout / ".venv" / "bin" / "python")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall_times(checkout: Path, args: list[str], data_dir: Path, runs: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds: user + system) per whole process, after one untimed run (which
    creates the database)."""
    command = [_python(checkout), "-c", ENTRY, *args]
    env = _env(data_dir)
    subprocess.run(command, cwd=checkout, env=env, capture_output=True, check=False)
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu_start)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(args)} failed in {checkout}: {done.stderr.decode()[-500:]}")
    return walls, cpus


def import_cost(checkout: Path, args: list[str], data_dir: Path) -> tuple[float, list[tuple[float, str]], list[str]]:
    """(seconds importing in total, the 6 heaviest top-level imports, the heavy libraries loaded)."""
    command = [_python(checkout), "-X", "importtime", "-c", ENTRY, *args]
    done = subprocess.run(command, cwd=checkout, env=_env(data_dir), capture_output=True, text=True, check=False)
    top: list[tuple[float, str]] = []
    loaded: set[str] = set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        module = name.strip()
        loaded.add(module.split(".")[0])
        if name.startswith(" ") and not name.startswith("  "):  # one space: imported at the top level
            top.append((int(cumulative) / 1e6, module))
    total = sum(seconds for seconds, _ in top)
    return total, sorted(top, reverse=True)[:6], [lib for lib in HEAVY if lib in loaded]


Result = tuple[float, float, float, list[tuple[float, str]], list[str]]  # wall, CPU, imports, heaviest, heavy


def measure(checkout: Path, runs: int) -> dict[str, Result]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="tradeops-startup-") as tmp:
        for label, args in COMMANDS.items():
            data_dir = Path(tmp) / label.replace(" ", "_").replace("/", "")
            walls, cpus = wall_times(checkout, args, data_dir, runs)
            total, top, heavy = import_cost(checkout, args, data_dir)
            results[label] = (statistics.median(walls), statistics.median(cpus), total, top, heavy)
    return results


def report(name: str, results: dict[str, Result]) -> None:
    print(f"\n== {name}")
    for label, (median, cpu, total, top, heavy) in results.items():
        target = TARGETS.get(label)
        verdict = "" if target is None else f" (target <= {target:.1f} s: {'met' if median <= target else 'NOT met'})"
        print(f"{label:20} wall median {median:6.2f} s{verdict}; CPU median {cpu:.2f} s")
        print(f"{'':20} imports {total:6.2f} s; heavy libraries loaded: {', '.join(heavy) or 'none'}")
        print(f"{'':20} heaviest: " + ", ".join(f"{module} {seconds:.2f}" for seconds, module in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median reported)")
    parser.add_argument("--compare", type=Path, help="another checkout with its own .venv, e.g. /work/main")
    options = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of {options.runs} runs")
    here = measure(ROOT, options.runs)
    report(f"this checkout ({ROOT})", here)
    if options.compare is not None:
        other = measure(options.compare.resolve(), options.runs)
        report(f"compared checkout ({options.compare})", other)
        print("\nratio this / compared (wall median, CPU median, import seconds):")
        for label in COMMANDS:
            wall, cpu, imports = (here[label][i] / other[label][i] for i in range(3))
            print(f"{label:20} wall {wall:.2f}x, CPU {cpu:.2f}x, imports {imports:.2f}x")


if __name__ == "__main__":
    main()
