"""The LLM judge (issue 18) against a loopback OpenAI-compatible judge with known biases: the swap exposes a judge
that prefers the first answer, the length control exposes one that prefers the longer answer; bad replies, 429s
and timeouts are retried then ledgered; a killed run resumes without judging anything twice."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from lib import api, data, judge, paths
from tests.chat_server import JudgeServer

ROOT = paths.ROOT


def _outputs(tmp_path, pairs, name):
    """notebook-07-style output files for answers a (name_a.jsonl) and b (name_b.jsonl)."""
    files = []
    for side in ("a", "b"):
        path = tmp_path / f"{name}_{side}.jsonl"
        data.write_jsonl(
            [
                {
                    "instruction": p["instruction"],
                    "input": p.get("input", ""),
                    "reference": "ref",
                    "output": p[side],
                    "stopped_by_eos": True,
                }
                for p in pairs
            ],
            path,
        )
        files.append(path)
    return files


def _pairs(n=12, longer_b=0.75):
    """Answers of similar quality; B is the longer one in `longer_b` of the pairs."""
    out = []
    for i in range(n):
        short, long_ = f"Resposta curta {i}.", f"Resposta bem mais longa e detalhada número {i}, com explicações."
        b_longer = i < round(longer_b * n)
        out.append(
            {
                "instruction": f"Pergunta {i}: explique algo.",
                "a": short if b_longer else long_,
                "b": long_ if b_longer else short,
            }
        )
    return out


def _run(server, a, b, out, *extra):
    return judge.main(
        [
            "--a",
            str(a),
            "--b",
            str(b),
            "--base-url",
            server.base_url,
            "--model",
            "judge-test",
            "--output-dir",
            str(out),
            "--workers",
            "4",
            "--backoff-base",
            "0.01",
            *extra,
        ]
    )


def test_a_judge_that_always_prefers_the_first_answer_is_caught_by_the_swap(tmp_path):
    a, b = _outputs(tmp_path, _pairs(), "first")
    with JudgeServer(policy="first") as server:
        summary = _run(server, a, b, tmp_path / "out")
    assert summary["win_rate_b"] == 0.5 and summary["position_consistency"] == 0
    assert summary["first_position_preference"] == 1 and summary["ties"] == summary["n"] == 12
    written = json.loads((tmp_path / "out" / "judge.json").read_text())
    for key in (
        "n",
        "judge_model",
        "prompt_version",
        "win_rate_b",
        "win_rate_b_ci",
        "ties",
        "position_consistency",
        "first_position_preference",
        "length_controlled_win_rate_b",
        "mean_score_a",
        "mean_score_b",
        "invalid_verdicts",
    ):
        assert key in written, key
    assert written["judge_model"] == "judge-test" and written["prompt_version"] == judge.PROMPT_VERSION
    verdicts = data.read_jsonl(tmp_path / "out" / "verdicts.jsonl")
    assert len(verdicts) == 12 and all(v["winner"] == "tie" for v in verdicts)


def test_a_judge_that_prefers_longer_answers_shows_in_the_length_controlled_rate(tmp_path):
    a, b = _outputs(tmp_path, _pairs(longer_b=0.75), "longer")
    with JudgeServer(policy="longer") as server:
        summary = _run(server, a, b, tmp_path / "out")
    assert summary["win_rate_b"] == 0.75 and summary["position_consistency"] == 1
    # the length term takes over most of B's lead (not all: when length explains every verdict, the fit cannot tell
    # "B is better" from "longer wins" apart, and the weak L2 keeps the length weight finite)
    assert 0.5 <= summary["length_controlled_win_rate_b"] < summary["win_rate_b"] - 0.1
    assert summary["mean_score_b"] > summary["mean_score_a"]  # the pointwise judge likes length too
    ci = summary["win_rate_b_ci"]
    assert ci[0] <= summary["win_rate_b"] <= ci[1]


def test_bad_replies_429s_and_timeouts_are_retried_then_ledgered_with_the_reason(tmp_path):
    pairs = _pairs(4)
    a, b = _outputs(tmp_path, pairs, "faults")
    items = judge.requests(judge.load_pairs(a, b), "judge-test")
    key = lambda i: judge.messages_for(items[i])[-1]["content"]  # noqa: E731 - the server keys faults by request
    # items per pair: ab, ba, score a, score b. 2 retries = 3 attempts: items 4 and 2 fail every one, are ledgered
    faults = {
        key(0): ["429", "malformed"],
        key(1): ["timeout"],
        key(4): ["bad_winner"] * 3,
        key(2): ["bad_score"] * 3,
        key(6): ["prose"],
    }
    with JudgeServer(policy="first", faults=faults, retry_after="0", hang_seconds=3.0) as server:
        backend = api.OpenAIBackend("judge-test", base_url=server.base_url, timeout=1.0)
        summary = judge.judge(
            judge.load_pairs(a, b),
            backend,
            tmp_path / "out2",
            "judge-test",
            workers=4,
            max_retries=2,
            backoff_base=0.01,
            progress=False,
        )
        attempts = Counter(r["key"] for r in server.requests)
    ledger = {r["id"]: r for r in data.read_jsonl(tmp_path / "out2" / "ledger.jsonl")}
    assert set(ledger) == {items[4]["id"], items[2]["id"]}
    assert "invalid verdict: winner 'C'" in ledger[items[4]["id"]]["last_reason"]
    assert "invalid verdict: score 11" in ledger[items[2]["id"]]["last_reason"]
    assert all(r["attempts"] == 3 and r["last_reply"] for r in ledger.values())
    assert summary["invalid_verdicts"] == 2 and summary["n"] == 4 and summary["judged"] == 3
    assert (attempts[key(0)], attempts[key(6)]) == (3, 2) and attempts[key(1)] >= 2  # retried, then answered


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_judges_nothing_twice_and_gives_the_same_result(tmp_path):
    a, b = _outputs(tmp_path, _pairs(20), "kill")
    with JudgeServer(policy="longer", delay=0.05) as server:
        _run(server, a, b, tmp_path / "reference")
        server.requests.clear()
        command = [
            sys.executable,
            "-m",
            "lib.judge",
            "--a",
            str(a),
            "--b",
            str(b),
            "--base-url",
            server.base_url,
            "--model",
            "judge-test",
            "--output-dir",
            str(tmp_path / "killed"),
            "--workers",
            "2",
        ]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(server.requests) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        cached = {r["id"] for r in data.read_jsonl(tmp_path / "killed" / "cache.jsonl")}
        assert 0 < len(cached) < 80, "the run finished before it could be killed"
        before = len(server.requests)
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
        asked = Counter(r["key"] for r in server.requests)
    items = {
        i["id"]: judge.messages_for(i)[-1]["content"] for i in judge.requests(judge.load_pairs(a, b), "judge-test")
    }
    assert all(asked[items[i]] == 1 for i in cached), "a verdict cached before the kill was asked for again"
    assert len(server.requests) - before == 80 - len(cached)  # the rerun asked only for what was missing
    assert max(asked.values()) <= 2
    again = json.loads((tmp_path / "killed" / "judge.json").read_text())
    assert again == json.loads((tmp_path / "reference" / "judge.json").read_text())


def test_pairs_must_answer_the_same_instructions(tmp_path):
    a, b = _outputs(tmp_path, _pairs(3), "pairs")
    rows = data.read_jsonl(b)
    rows[1]["instruction"] = "outra coisa"
    data.write_jsonl(rows, b)
    with pytest.raises(ValueError, match="line 2.*instructions differ"):
        judge.load_pairs(a, b)
    data.write_jsonl(rows[:2], b)
    with pytest.raises(ValueError, match="line 3: no answer to pair it with"):
        judge.load_pairs(a, b)
    a.write_text(a.read_text() + '{"instruction": "x", "input": ""}\n')
    with pytest.raises(ValueError, match="line 4: field 'output'"):
        judge.load_pairs(a, b)


@pytest.mark.parametrize(
    "reply, kind, error",
    [
        ('{"winner": "A", "reason": "ok", "confidence": 0.9}', "pair", None),  # extra keys are ignored
        ('```json\n{"winner": "tie", "reason": "ok"}\n```', "pair", None),
        ('{"winner": "a", "reason": "x"}', "pair", "winner 'a'"),
        ('{"winner": "A", "reason": 3}', "pair", "reason is int"),
        ("A", "pair", "bad JSON"),
        ('{"score": 7, "reason": "bom"}', "score", None),
        ('{"score": 11, "reason": "x"}', "score", "score 11"),
        ('{"score": "7", "reason": "x"}', "score", "score '7'"),
        ('{"score": true, "reason": "x"}', "score", "score True"),
        ('{"score": 6.5, "reason": "x"}', "score", "score 6.5"),
    ],
)
def test_reply_schema(reply, kind, error):
    if error is None:
        assert judge.parse_verdict(reply, {"kind": kind})
    else:
        with pytest.raises(api.ReplyError, match=error):
            judge.parse_verdict(reply, {"kind": kind})


def test_prompt_version_and_judge_model_are_part_of_the_cache_key(monkeypatch):
    pairs = [{"instruction": "i", "input": "", "reference": "", "a": "x", "b": "y"}]
    first = {i["id"] for i in judge.requests(pairs, "m1")}
    assert first.isdisjoint({i["id"] for i in judge.requests(pairs, "m2")})
    monkeypatch.setattr(judge, "PROMPT_VERSION", "pt-judge-v2")
    assert first.isdisjoint({i["id"] for i in judge.requests(pairs, "m1")})


def test_dry_run_counts_calls_and_tokens_without_a_server(tmp_path):
    a, b = _outputs(tmp_path, _pairs(5), "dry")
    plan = judge.main(
        ["--a", str(a), "--b", str(b), "--model", "gpt-4o", "--output-dir", str(tmp_path / "o"), "--dry-run"]
    )
    assert plan["calls"] == 20 and plan["pairwise_calls"] == 10 and plan["pointwise_calls"] == 10
    assert plan["prompt_tokens_estimate"] > 100 and not (tmp_path / "o").exists()
    assert (
        judge.main(
            [
                "--a",
                str(a),
                "--b",
                str(b),
                "--model",
                "m",
                "--output-dir",
                "o",
                "--dry-run",
                "--no-pointwise",
                "--limit",
                "2",
            ]
        )["calls"]
        == 4
    )


def test_length_controlled_rate_is_the_raw_rate_when_length_says_nothing():
    balanced = [(1.0, d, p) for d in (-50, 50) for p in (-1, 1)] + [(0.0, d, p) for d in (-50, 50) for p in (-1, 1)]
    assert judge.length_controlled_win_rate(balanced) == 0.5
    better_b = [(1.0, d, p) for d in (-50, 50) for p in (-1, 1)] * 3 + [(0.0, d, p) for d in (-50, 50) for p in (-1, 1)]
    assert judge.length_controlled_win_rate(better_b) > 0.65


def test_a_changed_prompt_is_never_a_cache_hit_and_stale_verdicts_are_pruned(tmp_path, monkeypatch):
    a, b = _outputs(tmp_path, _pairs(3), "stale")
    with JudgeServer(policy="longer") as server:
        _run(server, a, b, tmp_path / "out")
        first = len(server.requests)
        _run(server, a, b, tmp_path / "out")
        assert len(server.requests) == first  # same prompts: everything from the cache
        monkeypatch.setattr(judge, "PAIRWISE_SYSTEM", judge.PAIRWISE_SYSTEM + "\nSeja breve.")
        summary = _run(server, a, b, tmp_path / "out")
    pairwise = [i for i in judge.requests(judge.load_pairs(a, b), "judge-test") if i["kind"] == "pair"]
    assert len(server.requests) - first == len(pairwise)  # every pairwise verdict asked again, no score
    assert summary["this_run"]["stale_pruned"] == len(pairwise)
    cached = [r["id"] for r in data.read_jsonl(tmp_path / "out" / "cache.jsonl")]
    assert sorted(cached) == sorted(i["id"] for i in judge.requests(judge.load_pairs(a, b), "judge-test"))
