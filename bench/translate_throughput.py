"""Benchmark: translation records/s with workers=1 vs workers=16 against a loopback chat server (~100 ms/reply).

Same 200 records, same run; prints the ratio (target >= 10x) and the duplicate count (must be 0), and writes
results/<profile>/bench/translate_throughput.json.  Run: .venv/bin/python bench/translate_throughput.py
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

from lib import paths, translate  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402

TARGET = 10.0


def records(n: int) -> list[dict]:
    return [{"id": f"bench-{i:04d}", "context": f"Record {i}: a short story about a day at the office.",
             "question": f"What happened on day {i}?", "answer0": "A meeting", "answer1": "A party",
             "answer2": "A storm", "answer3": "None of the above choices .", "label": i % 4} for i in range(n)]


def measure(server: ChatServer, rows: list[dict], workers: int, folder: Path) -> dict:
    backend = translate.OpenAIBackend("bench", base_url=server.base_url)
    translator = translate.Translator(backend, folder, workers=workers, progress=False)
    start = time.perf_counter()
    stats = translator.run(rows)
    seconds = time.perf_counter() - start
    ids = [json.loads(line)["id"] for line in (folder / "cache.jsonl").read_text().splitlines()]
    return {"workers": workers, "records": len(rows), "seconds": round(seconds, 3),
            "records_per_s": round(len(rows) / seconds, 2), "done": stats.done, "failed": stats.failed,
            "duplicates": len(ids) - len(set(ids))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.1, help="server seconds per reply")
    args = parser.parse_args()
    rows = records(args.records)
    with ChatServer(delay=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        baseline = measure(server, rows, 1, Path(tmp) / "w1")
        ours = measure(server, rows, 16, Path(tmp) / "w16")
    ratio = ours["records_per_s"] / baseline["records_per_s"]
    duplicates = baseline["duplicates"] + ours["duplicates"]
    result = {"name": "translate_throughput", "ratio": round(ratio, 2), "target": TARGET,
              "met": ratio >= TARGET and duplicates == 0, "duplicates": duplicates, "server_delay_s": args.delay,
              "baseline_workers_1": baseline, "ours_workers_16": ours}
    out = paths.write_json(result, paths.RESULTS / args.profile / "bench" / "translate_throughput.json")
    print(f"workers=1: {baseline['records_per_s']} rec/s | workers=16: {ours['records_per_s']} rec/s | "
          f"ratio {ratio:.1f}x (target >= {TARGET}x) | duplicates {duplicates} -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
