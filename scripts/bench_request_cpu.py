"""CPU per forecast request, this tree against a base revision, alternating (A/B).

Builds the demo LSTM export and its key once (:func:`scripts.bench_http.prepare`), checks
the base revision out into a temporary detached git worktree, then runs
:func:`scripts.bench_http.in_process` (``--in-process``: N requests through the ASGI app,
no sockets) ``--rounds`` times for each tree, alternately, each run in a fresh subprocess
whose ``PYTHONPATH`` puts that tree's ``geoclim`` first (the in-process function is this
tree's, loaded by path). The order flips every round, so a drift in the machine's load
weighs on both sides alike. Prints both medians and their ratio (new / base); ``--json``
records every run and the load average.

    python -m scripts.bench_request_cpu --base 8a8e0a9 --rounds 5
    python -m scripts.bench_request_cpu --base 8a8e0a9 --rounds 5 \
        --json experiments/bench_serving/request_cpu_r9.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from geoclim.fileio import write_text

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import asyncio, importlib.util, json, sys
from pathlib import Path
tree, bench, prep, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tree)
import geoclim
if not geoclim.__file__.startswith(tree):
    raise SystemExit(f"geoclim came from {geoclim.__file__}, not {tree}")
spec = importlib.util.spec_from_file_location("bench_http", bench)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
p = json.loads(Path(prep).read_text())
cpu, _ = asyncio.run(module.in_process(p["body"], Path(p["path"]), p["key"], n, False))
print(json.dumps({"cpu_ms": cpu}))
"""


def run_once(tree: Path, prep: Path, n: int) -> float:
    """CPU ms per request of ``n`` in-process requests with ``tree``'s ``geoclim``."""
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(ROOT / "scripts" / "bench_http.py")]
        + [str(prep), str(n)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"run with {tree} failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms"])


def _git(*args: str, what: str = "git") -> str:
    """``git -C ROOT args`` output; a failure (e.g. an unknown revision) is a clear exit."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{what}: git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each tree")
    parser.add_argument("-n", "--requests", type=int, default=3000, help="requests per run")
    parser.add_argument("--json", type=Path, help="record the runs in this file")
    parser.add_argument("--note", help="a remark stored with the result")
    args = parser.parse_args()
    rev = _git("rev-parse", "--short", "--verify", f"{args.base}^{{commit}}", what="--base")
    head = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        head += "+uncommitted"  # the tree measured is the working tree
    from scripts.bench_http import prepare

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path, key, body = prepare(tmp)
        prep = tmp / "request.json"
        prep.write_text(json.dumps({"path": str(path), "key": key, "body": body}))
        base = tmp / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base), rev],
            check=True,
        )
        runs: dict[str, list[float]] = {"base": [], "new": []}
        load = [os.getloadavg()[0]]
        try:
            for r in range(args.rounds):
                order = [("base", base), ("new", ROOT)]
                for label, tree in order if r % 2 == 0 else order[::-1]:
                    runs[label].append(run_once(tree, prep, args.requests))
                    load.append(os.getloadavg()[0])
                    print(f"round {r + 1} {label}: {runs[label][-1]:.3f} ms CPU per request")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
            )
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratios = [n / b for n, b in zip(runs["new"], runs["base"], strict=True)]
    result = {
        "base": rev,
        "new": head,
        "requests_per_run": args.requests,
        "rounds": args.rounds,
        "cpu_ms_per_request": runs,
        "median_ms": {k: round(v, 4) for k, v in med.items()},
        "ratio_of_medians": round(med["new"] / med["base"], 4),
        "median_of_round_ratios": round(statistics.median(ratios), 4),
        "load_average_1m": {"min": min(load), "max": max(load), "all": load},
        "cpu_count": os.cpu_count(),
        "payload": "one location, 24 h history, 24 h forecast (demo LSTM), in process",
    }
    if args.note:
        result["note"] = args.note
    print(
        f"base {rev}: {med['base']:.3f} ms, new {head}: {med['new']:.3f} ms CPU per request "
        f"(medians of {args.rounds}); new / base {result['ratio_of_medians']:.3f} "
        f"(median of round ratios {result['median_of_round_ratios']:.3f}); load average "
        f"{min(load):.2f}...{max(load):.2f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
