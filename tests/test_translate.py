import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lib import data, paths, translate
from tests.chat_server import FAULTS, ChatServer
from tests.chat_server import translate as fake_translation

ROOT = paths.ROOT
SAMPLE = paths.SAMPLES / "cosmos_qa_en.jsonl"
HOSTILE = [
    "It's Bob's car, isn't it?",
    'She said "don\'t go" and left.',
    "He wrote “curly quotes” and ‘single ones’.",
    "Line one\nline two\r\n\ttabbed",
    "Emoji 😀🇧🇷 and 👩‍👩‍👧",
    "Path C:\\Users\\ana\\file.txt and a \\n that is not a newline",
    "See https://example.com/a?b=1&c=%20d#frag for details.",
    "{'contexto': 'looks like a dict'} and } braces {",
]


def row(i: int, context: str | None = None, label: int = 0) -> dict:
    return {"id": f"r{i}", "context": context or f"Story number {i} about a long day at work.",
            "question": f"What happened in story {i}?", "answer0": f"Option zero {i}", "answer1": f"Option one {i}",
            "answer2": f"Option two {i}", "answer3": "None of the above choices .", "label": label}


def make_translator(server, tmp_path, **kwargs):
    backend = translate.OpenAIBackend("test-model", base_url=server.base_url, timeout=kwargs.pop("timeout", 5.0))
    return translate.Translator(backend, tmp_path / "out", progress=False, backoff_base=0.01, **kwargs)


# ---------------------------------------------------------------- reply parsing (protocol)

SOURCE = row(1)
GOOD = json.dumps(fake_translation(SOURCE))


@pytest.mark.parametrize("reply, reason", [
    ("", "empty reply"),
    (str(fake_translation(SOURCE)), "bad JSON"),
    ("Aqui está: " + GOOD, "bad JSON"),
    ("[1, 2]", "expected an object"),
    (json.dumps({k: v for k, v in fake_translation(SOURCE).items() if k != "pergunta"}), "missing key(s): pergunta"),
    (json.dumps({**fake_translation(SOURCE), "nota": "x"}), "extra key(s): nota"),
    (json.dumps({**fake_translation(SOURCE), "E": "x"}), "option count wrong"),
    (json.dumps({k: v for k, v in fake_translation(SOURCE).items() if k != "D"}), "option count wrong"),
    (json.dumps({**fake_translation(SOURCE), "C": "   "}), "field C: empty"),
    (json.dumps({**fake_translation(SOURCE), "A": 3}), "field A: expected text"),
    (json.dumps({**fake_translation(SOURCE), "contexto": SOURCE["context"]}), "untranslated copy"),
])
def test_bad_replies_are_rejected_with_a_reason(reply, reason):
    with pytest.raises(translate.ReplyError) as error:
        translate.parse_reply(reply, SOURCE)
    assert reason in str(error.value)


@pytest.mark.parametrize("wrap", ["{}", "```json\n{}\n```", "```\n{}\n```", "  \n```JSON\n{}```  "])
def test_valid_replies_are_accepted_with_or_without_a_code_fence(wrap):
    assert translate.parse_reply(wrap.replace("{}", GOOD), SOURCE) == fake_translation(SOURCE)


def test_the_label_is_never_sent_and_the_request_is_deterministic(tmp_path):
    with ChatServer() as server:
        make_translator(server, tmp_path).run([row(1, label=3)])
    body = server.requests[0]["body"]
    assert body["temperature"] == 0 and body["response_format"]["type"] == "json_schema"
    sent = json.loads(body["messages"][-1]["content"])
    assert list(sent) == list(translate.SOURCE_KEYS)  # no label, no id
    assert "Nenhuma das opções acima." in body["messages"][0]["content"]


def test_unstructured_mode_sends_no_response_format(tmp_path):
    with ChatServer() as server:
        backend = translate.OpenAIBackend("m", base_url=server.base_url, structured=False)
        translate.Translator(backend, tmp_path, progress=False).run([row(1)])
    assert "response_format" not in server.requests[0]["body"]


# ---------------------------------------------------------------- faults: retried or ledgered

def test_every_fault_kind_is_retried_until_success(tmp_path):
    rows = [row(i) for i in range(len(FAULTS))]
    faults = {r["context"]: [kind] for r, kind in zip(rows, FAULTS)}
    with ChatServer(faults, hang_seconds=2.0, retry_after="0") as server:
        translator = make_translator(server, tmp_path, workers=4, max_retries=2, timeout=1.0)
        stats = translator.run(rows)
    done = translator.translations()
    assert stats.done == len(rows) and stats.failed == 0 and translator.failures() == {}
    for r, kind in zip(rows, FAULTS):
        assert done[r["id"]]["translation"] == fake_translation(r), kind
        expected_attempts = 1 if kind in ("fence", "slow") else 2
        assert done[r["id"]]["attempts"] == expected_attempts, kind


def test_persistent_faults_go_to_the_ledger_and_retry_failed_only_retries_those(tmp_path):
    rows = [row(i) for i in range(6)]
    faults = {rows[1]["context"]: ["bad_json"] * 3, rows[4]["context"]: ["500"] * 3}
    with ChatServer(faults, retry_after="0") as server:
        translator = make_translator(server, tmp_path, max_retries=2)
        stats = translator.run(rows)
        ledger = translator.failures()
        assert stats.done == 4 and stats.failed == 2 and set(ledger) == {"r1", "r4"}
        assert ledger["r1"]["attempts"] == 3 and "bad JSON" in ledger["r1"]["last_reason"]
        assert ledger["r1"]["last_reply"].startswith("{'contexto'")
        assert ledger["r4"]["last_reason"] == "HTTP 500"
        # A normal rerun does not hammer ledgered rows; a retry-failed pass touches only them.
        before = len(server.requests)
        assert translator.run(rows).done == 0 and len(server.requests) == before
        stats = translator.run(rows, retry_failed=True)
        retried = {r["context"] for r in server.requests[before:]}
    assert retried == {rows[1]["context"], rows[4]["context"]}
    assert stats.done == 2 and translator.failures() == {}
    assert len(translator.translations()) == 6


def test_retry_after_is_honoured(tmp_path):
    r = row(1)
    with ChatServer({r["context"]: ["429"]}, retry_after="1") as server:
        make_translator(server, tmp_path).run([r])
    first, second = server.requests
    assert second["time"] - first["time"] >= 0.95


def test_authentication_errors_stop_the_run_instead_of_ledgering_everything(tmp_path):
    class Unauthorized(ChatServer):
        def handle(self, handler, body):
            self.requests.append({"context": "", "fault": "401", "time": 0, "body": body})
            self._send(handler, 401, {"error": {"message": "bad key", "type": "auth"}})

    with Unauthorized() as server:
        with pytest.raises(translate.FatalBackendError):
            make_translator(server, tmp_path, workers=2).run([row(i) for i in range(20)])
    assert len(server.requests) < 20  # the queue was cancelled


def test_hostile_texts_survive_intact(tmp_path):
    rows = [row(i, context=text) for i, text in enumerate(HOSTILE)]
    rows[0]["question"] = "Who's \"there\"? \\ 🙂"
    with ChatServer() as server:
        translator = make_translator(server, tmp_path, workers=4)
        translator.run(rows)
    source = data.to_dataset(rows, data.COSMOS_EN)
    pt = translate.to_portuguese({"train": source}, translator.translations())["train"]
    for original, out in zip(rows, pt):
        assert out["contexto"] == "[pt] " + original["context"]
        assert out["pergunta"] == "[pt] " + original["question"]
        assert out["Label"] == "A"


# ---------------------------------------------------------------- concurrency, order, crash safety

def test_workers_restore_source_order_without_duplicates(tmp_path):
    rows = data.load(SAMPLE, "cosmos_qa_en")[0]
    with ChatServer(delay=0.02) as server:
        out = tmp_path / "out"
        backend = translate.OpenAIBackend("m", base_url=server.base_url)
        portuguese = translate.translate_dataset(str(SAMPLE), out, backend, workers=8, progress=False).portuguese
    assert portuguese["train"]["id"] == rows["train"]["id"]
    assert [data.letter_to_label(x) for x in portuguese["train"]["Label"]] == rows["train"]["label"]
    cache_ids = [json.loads(line)["id"] for line in (out / "cache.jsonl").read_text().splitlines()]
    assert len(cache_ids) == len(set(cache_ids)) == len(rows["train"])
    assert (out / "train.jsonl").exists() and (out / "arrow").exists()


def test_test_split_without_labels_keeps_no_label(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    data.write_jsonl([row(1)], folder / "train.jsonl")
    data.write_jsonl([{**row(2), "label": -1}], folder / "test.jsonl")
    with ChatServer() as server:
        backend = translate.OpenAIBackend("m", base_url=server.base_url)
        portuguese = translate.translate_dataset(str(folder), tmp_path / "out", backend, progress=False).portuguese
    assert portuguese["train"]["Label"] == ["A"] and portuguese["test"]["Label"] == [None]


def test_a_torn_last_cache_line_is_dropped_and_redone(tmp_path):
    rows = [row(i) for i in range(3)]
    with ChatServer() as server:
        translator = make_translator(server, tmp_path)
        translator.run(rows[:2])
        cache = tmp_path / "out" / "cache.jsonl"
        cache.write_bytes(cache.read_bytes()[:-15])  # the second record is cut mid-write
        translator = make_translator(server, tmp_path)
        translator.run(rows)
    ids = [json.loads(line)["id"] for line in cache.read_text().splitlines()]
    assert sorted(ids) == ["r0", "r1", "r2"]


def _cli(server, source, out):
    return [sys.executable, "-m", "lib.translate", "--source", str(source), "--output-dir", str(out),
            "--backend", "openai", "--model", "m", "--base-url", server.base_url, "--workers", "4",
            "--backoff-base", "0.01"]


def _lines(path):
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_kill_9_at_several_points_then_rerun_equals_an_uninterrupted_run(tmp_path):
    faults = {r["context"]: ["500"] for r in data.load(SAMPLE, "cosmos_qa_en")[0]["train"].select(range(0, 44, 5))}
    with ChatServer(faults, delay=0.03, retry_after="0") as server:
        reference = tmp_path / "reference"
        subprocess.run(_cli(server, SAMPLE, reference), cwd=ROOT, check=True, capture_output=True, timeout=300)
        for kill_after in (0, 5, 25):
            out = tmp_path / f"killed_{kill_after}"
            process = subprocess.Popen(_cli(server, SAMPLE, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while _lines(out / "cache.jsonl") < kill_after and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            assert _lines(out / "cache.jsonl") < 44, "the run finished before it could be killed"
            subprocess.run(_cli(server, SAMPLE, out), cwd=ROOT, check=True, capture_output=True, timeout=300)
            assert (out / "train.jsonl").read_text() == (reference / "train.jsonl").read_text()
            ids = [json.loads(line)["id"] for line in (out / "cache.jsonl").read_text().splitlines()]
            assert len(ids) == len(set(ids)) == 44


# ---------------------------------------------------------------- local backend, for real

def test_local_backend_on_the_embedded_model(tmp_path):
    backend = translate.LocalBackend("embedded", batch_size=2, max_new_tokens=24)
    rows = [row(1), row(2, context="It's raining, so \"we\" stayed home.")]
    translator = translate.Translator(backend, tmp_path, max_retries=1, progress=False)
    stats = translator.run(rows)
    assert stats.done + stats.failed == 2
    for record in translator.failures().values():  # a 270M base model rarely follows the protocol
        assert record["attempts"] == 2 and record["last_reason"] and isinstance(record["last_reply"], str)
    for record in translator.translations().values():
        assert set(record["translation"]) == set(translate.TARGET_KEYS)
    report = translate.quality_report({"train": data.to_dataset(rows, data.COSMOS_EN)}, translator)
    assert report["done"] + report["failed"] == 2 and report["pending"] == 0
    assert sum(report["attempts_histogram"].values()) == 2


def test_bad_source_rows_are_reported_and_never_sent(tmp_path):
    source = tmp_path / "en.jsonl"
    bad = {**row(2), "label": 9}
    source.write_text("\n".join([json.dumps(row(1)), "{oops", json.dumps(bad), json.dumps(row(3))]) + "\n")
    with ChatServer() as server:
        backend = translate.OpenAIBackend("m", base_url=server.base_url)
        run = translate.translate_dataset(str(source), tmp_path / "out", backend, progress=False)
        portuguese, report = run.portuguese, run.report
    assert {r["context"] for r in server.requests} == {row(1)["context"], row(3)["context"]}
    assert [r.location for r in report.rejects] == ["line 2", "line 3"]
    assert portuguese["train"]["id"] == ["r1", "r3"]
