"""Benchmark: judge calls/s with workers=1 vs workers=16 against a loopback judge server (200 ms/reply).

Same 20 answer pairs (80 calls: both orders + a score per answer), same run; prints the ratio (target >= 10x), checks
that both runs reach the same judge.json, and writes results/<profile>/bench/judge_throughput.json.
Run: .venv/bin/python bench/judge_throughput.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import api, judge, paths  # noqa: E402
from tests.chat_server import JudgeServer  # noqa: E402

TARGET = 10.0


def answer_pairs(n: int) -> list[dict]:
    return [
        {
            "instruction": f"Explique o tema {i} em poucas frases.",
            "input": "",
            "reference": "Uma explicação.",
            "a": f"Resposta curta {i}.",
            "b": f"Uma resposta mais longa sobre o tema {i}, com um exemplo.",
        }
        for i in range(n)
    ]


def measure(server: JudgeServer, pairs: list[dict], workers: int, folder: Path) -> dict:
    backend = api.OpenAIBackend("bench-judge", base_url=server.base_url)
    start = time.perf_counter()
    summary = judge.judge(pairs, backend, folder, "bench-judge", workers=workers, progress=False)
    seconds = time.perf_counter() - start
    ids = [json.loads(line)["id"] for line in (folder / "cache.jsonl").read_text().splitlines()]
    return {
        "workers": workers,
        "calls": summary["calls"],
        "seconds": round(seconds, 3),
        "calls_per_s": round(summary["calls"] / seconds, 2),
        "invalid_verdicts": summary["invalid_verdicts"],
        "duplicates": len(ids) - len(set(ids)),
        "judge": (folder / "judge.json").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.2, help="server seconds per reply")
    args = parser.parse_args()
    pairs = answer_pairs(args.pairs)
    with JudgeServer(policy="longer", delay=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        baseline = measure(server, pairs, 1, Path(tmp) / "w1")
        ours = measure(server, pairs, 16, Path(tmp) / "w16")
    ratio = ours["calls_per_s"] / baseline["calls_per_s"]
    same = baseline.pop("judge") == ours.pop("judge")
    result = {
        "name": "judge_throughput",
        "ratio": round(ratio, 2),
        "target": TARGET,
        "met": ratio >= TARGET and same and ours["duplicates"] == 0,
        "same_judge_json": same,
        "server_delay_s": args.delay,
        "baseline_workers_1": baseline,
        "ours_workers_16": ours,
    }
    out = paths.write_json(result, paths.RESULTS / args.profile / "bench" / "judge_throughput.json")
    print(
        f"workers=1: {baseline['calls_per_s']} calls/s | workers=16: {ours['calls_per_s']} calls/s | ratio "
        f"{ratio:.1f}x (target >= {TARGET}x) | same judge.json: {same} -> {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
