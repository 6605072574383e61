"""The quality estimate as a ranking (lib/qe.py), judged against references; post-editing by budget over a loopback
server; notebook 01 on a source its default reference does not cover."""

import json
import math
import subprocess
import sys

import pytest

from lib import data, mt, paths, pipeline, qe, translate
from tests.chat_server import ChatServer

ROOT = paths.ROOT
ENGINE = mt.engine()


# ---------------------------------------------------------------- the measures


def test_spearman_and_recall_of_the_worst_share():
    assert qe.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0 and qe.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert qe.spearman([1, 1, 1], [1, 2, 3]) is None and qe.spearman([1, 2], [1, 2]) is None
    gold = list(range(10))  # rows 0 and 1 are the worst 20 %
    assert qe.recall_worst([0, 1, 5, 5, 5, 5, 5, 5, 5, 5], gold) == 1.0
    assert qe.recall_worst([9, 1, 5, 5, 5, 5, 5, 0, 5, 5], gold) == 0.5
    assert qe.recall_worst([9, 8, 0, 1, 5, 5, 5, 5, 5, 5], gold) == 0.0


def test_signals_score_and_judge_against_reference_chrf():
    def estimate(rt, slips=0, lm=None):
        e = {"reasons": [], "round_trip_chrf": rt, "round_trip_chrf_fields": {"contexto": rt, "A": rt - 5}}
        return {**e, "length_ratio": {"contexto": 1.1, "A": 2.2}, "grammar": ["x"] * slips, "lm_logprob": lm}

    values = qe.signals(estimate(80.0, slips=1, lm=-3.0))
    assert values["round_trip"] == 80.0 and values["round_trip_min_field"] == 75.0 and values["grammar"] == -1.0
    assert values["length_deviation"] == pytest.approx(-math.log(2))
    assert values["score"] == pytest.approx(80 - qe.LM_WEIGHT * 3 - qe.GRAMMAR_WEIGHT)
    assert qe.signals(estimate(80.0))["lm"] is None and qe.score(estimate(80.0)) == 80.0
    estimates = {f"r{i}": estimate(70.0 + i, slips=int(i == 4)) for i in range(10)}
    judged = qe.judge(estimates, {f"r{i}": 50.0 + i for i in range(10)})
    assert judged["rows"] == 10 and "lm" not in judged["qe_spearman"]  # not measured: not reported
    assert judged["qe_spearman"]["round_trip"] == 1.0 and judged["qe_recall_worst20"]["round_trip"] == 1.0
    assert judged["qe_spearman"]["score"] < 1.0  # the slip ranks r4 below its round trip
    assert qe.ranked(estimates)[:2] == ["r4", "r0"]  # 74 - 20 slips under 70


def test_selection_sends_the_worst_share_plus_every_hard_flag():
    estimates = {f"r{i}": {"reasons": [], "round_trip_chrf": 90.0 - i, "grammar": []} for i in range(10)}
    order = list(estimates)
    hard = {"r0": ["A: empty translation"]}
    chosen = qe.selection(order, estimates, hard, 0.2)
    assert [c["id"] for c in chosen] == ["r0", "r8", "r9"]  # source order; r9, r8 ranked worst; r0 hard-flagged
    assert chosen[0]["hard_flag"] and chosen[0]["why"] == ["A: empty translation"]
    assert "ranked 1 of 10" in chosen[2]["why"][0] and chosen[2]["rank"] == 1
    assert [c["id"] for c in qe.selection(order, estimates, hard, 0.0)] == ["r0"]
    assert [c["id"] for c in qe.selection(order, estimates, {}, 0.25)] == ["r7", "r8", "r9"]  # ceil(2.5)
    assert len(qe.selection(order, {}, {}, 1.0)) == 10  # every row needs no ranking
    with pytest.raises(ValueError, match="between 0 and 1"):
        qe.selection(order, estimates, {}, 1.5)
    with pytest.raises(ValueError, match="qe=True"):
        qe.selection(order, {}, {}, 0.2)


def test_grammar_slips_find_commands_and_enclitics_not_infinitives():
    source = {
        "context": "They left it on the bus again .",
        "question": "What will the narrator do next ?",
        "answer0": "Buy a bigger bowl for the cat .",
        "answer1": "Call the vet .",
        "answer2": "Students were expected to talk .",
        "answer3": "None of the above choices .",
    }
    translation = {
        "contexto": "Eles deixaram-lo no ônibus novamente.",
        "pergunta": "O que o narrador vai fazer em seguida?",
        "A": "Compre uma tigela maior para o gato.",
        "B": "Ligar para o veterinário.",
        "C": "Esperava-se que os alunos falassem.",
        "D": data.NONE_OF_THE_ABOVE,
    }
    slips = mt.grammar_slips(source, translation, ENGINE)
    assert len(slips) == 2 and slips[0].startswith("A: 'Compre' is a command") and "deixaram-lo" in slips[1]
    assert mt.grammar_slips(source, {**translation, "contexto": "Deixaram-no.", "A": "Comprar."}, ENGINE) == []


def test_a_source_the_reference_does_not_cover_is_counted_not_scored():
    rows = [{"id": "other-1", **{k: "Um texto." for k in translate.TARGET_KEYS}, "Label": "A"}]
    scores = translate.reference_scores({"train": data.to_dataset(rows, data.COSMOS_PT)}, translate_reference())
    assert scores["chrf"] is None and scores["bleu"] is None and scores["per_field"] == {}
    assert scores["reference_rows"] == 0 and scores["reference_unmatched"] == 1


def translate_reference():
    return paths.SAMPLES / "cosmos_qa_en_ptbr_reference.jsonl"


# ---------------------------------------------------------------- post-editing by budget, over a loopback server

STORIES = [
    "I stayed at the office until nine because the report was due .",
    "She said Привет to her neighbor and smiled .",  # a hard flag: a script the engine cannot read
    "We missed the last train and slept near the station .",
    "My phone screen cracked when I dropped it , and the shop quoted me $120 .",
    "The dog kept barking at the mailman , so we took him for a long walk .",
    "Our neighbors left their trash cans in the street again .",
    "I finally finished the novel I had been carrying around for months .",
    "My sister called to ask about the weekend while I was making coffee .",
    "The bakery on our corner sells fresh bread every morning .",
    "He forgot his keys at work and had to wait for his roommate .",
]


def _rows():
    return [
        {
            "id": f"r{i}",
            "context": story,
            "question": "What will the narrator probably do next ?",
            "answer0": "Buy a new phone .",
            "answer1": "Tell a friend about it .",
            "answer2": f"Nothing happened on day {i} .",
            "answer3": "None of the above choices .",
            "label": 0,
        }
        for i, story in enumerate(STORIES)
    ]


def _run(tmp_path, server, share, **kwargs):
    source = tmp_path / "en.jsonl"
    data.write_jsonl(_rows(), source)
    editor = translate.OpenAIBackend("editor", base_url=server.base_url)
    return translate.translate_dataset(
        str(source),
        tmp_path / "out",
        translate.make_backend("mt"),
        post_edit_backend=editor,
        post_edit_share=share,
        progress=False,
        **kwargs,
    )


def test_post_edit_share_sends_exactly_the_worst_ranked_rows_plus_hard_flags(tmp_path, capsys):
    with ChatServer() as server:
        run = _run(tmp_path, server, 0.2)
    by_context = {r["context"]: r["id"] for r in _rows()}
    sent = sorted(by_context[r["context"]] for r in server.requests)
    worst = qe.ranked(run.estimates, [r["id"] for r in _rows()])[:2]  # ceil(0.2 x 10)
    assert [f["id"] for f in run.flagged] == ["r1"]
    assert sent == sorted({*worst, "r1"}) and len(server.requests) == len(sent)  # each row sent once
    scores = {i: qe.score(e) for i, e in run.estimates.items()}
    assert max(scores[i] for i in worst) <= min(scores[i] for i in scores if i not in worst)
    metrics = translate.run_metrics(run, translate.make_backend("mt"))
    assert metrics["post_edit_share"] == 0.2 and metrics["post_edit_sent"] == len(sent) == metrics["post_edited"]
    why = {r["id"]: r["why"] for r in metrics["post_edit_rows"]}
    assert any("non-Latin" in w for w in why["r1"]) and all("ranked" in " ".join(why[i]) for i in worst)
    assert all(r["post_edit"] == "done" for r in metrics["post_edit_rows"]) and metrics["post_edit_tokens_estimate"] > 0
    printed = capsys.readouterr().out
    assert f"post-edit: {len(sent)} of 10 rows" in printed and "tokens" in printed
    assert all(f"  {i}: ~" in printed for i in sent)
    plan = data.read_jsonl(tmp_path / "out" / "post_edit" / "plan.jsonl")
    assert [p["id"] for p in plan] == [p["id"] for p in run.post_edit_plan]
    told = {r["context"]: json.loads(r["body"]["messages"][-1]["content"])["problemas"] for r in server.requests}
    assert all(told[c] for c in told)  # the post-editor is told why each row came


def test_post_edit_share_1_sends_every_row_and_a_bad_reply_keeps_the_draft(tmp_path):
    bad = _rows()[4]["context"]
    with ChatServer({bad: ["bad_json"] * 3}) as server:
        run = _run(tmp_path, server, 1.0, max_retries=2, backoff_base=0.01)
    assert {r["context"] for r in server.requests} == {r["context"] for r in _rows()}
    assert run.post_edited == 9 and run.post_edit_failed == 1
    pt = {r["id"]: r for r in run.portuguese["train"]}
    assert not pt["r4"]["contexto"].startswith("[pt]") and all(
        pt[f"r{i}"]["contexto"].startswith("[pt]") for i in (0, 9)
    )
    failed = [p for p in run.post_edit_plan if p["id"] == "r4"][0]
    assert failed["post_edit"].startswith("failed: bad JSON") and "MT draft is kept" in failed["post_edit"]


@pytest.mark.slow
def test_the_cli_post_edits_by_share_and_records_it(tmp_path):
    source = tmp_path / "en.jsonl"
    data.write_jsonl(_rows(), source)
    out = tmp_path / "out"
    with ChatServer() as server:
        done = subprocess.run(
            [sys.executable, "-m", "lib.translate", "--source", str(source), "--output-dir", str(out), "--workers", "2"]
            + ["--post-edit-base-url", server.base_url, "--post-edit-model", "m", "--post-edit-share", "0.5"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["post_edit_share"] == 0.5 and metrics["post_edit_sent"] == len(server.requests) >= 5
    assert "post-edit:" in done.stdout and "tokens" in done.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "lib.translate", "--source", str(source), "--output-dir", str(out)]
        + ["--post-edit-share", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "--post-edit-share must be between 0 and 1" in wrong.stderr


# ---------------------------------------------------------------- notebook 01 on anyone's data


@pytest.mark.slow
@pytest.mark.parametrize("which", ["other_ids", "samples"])
def test_notebook_01_runs_headless_on_a_source_with_or_without_reference_ids(tmp_path, which):
    """The default `reference` (the samples' references) applies only where ids match: a source whose ids are not
    in it is translated, estimated and not scored (reference_rows 0); the samples are scored."""
    if which == "samples":
        source, expected = paths.SAMPLES / "cosmos_qa_en.jsonl", 44
    else:
        source, expected = tmp_path / "en.jsonl", 0
        data.write_jsonl(_rows()[:6], source)
    pipeline.run(
        "smoke",
        only=["01"],
        results_root=tmp_path,
        overrides={"01": {"source": str(source), "dataset_dir": str(tmp_path / "cosmos_qa_ptbr")}},
    )
    metrics = json.loads((tmp_path / "smoke" / "01_translate_cosmos_qa" / "metrics.json").read_text())
    assert metrics["failed"] == 0 and metrics["done"] == metrics["rows"] == (44 if which == "samples" else 6)
    assert metrics["reference_rows"] == expected and metrics["qe"]["rows"] == metrics["done"]
    assert (metrics["chrf"] is None) == (expected == 0) and metrics["post_edit_sent"] == 0
    executed = (tmp_path / "smoke" / "notebooks" / "01_translate_cosmos_qa.ipynb").read_text()
    assert "What the estimate catches" in executed and "score" in executed


@pytest.mark.slow
def test_the_bench_judges_the_estimate_on_both_reference_sets(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import translate_throughput

    result = translate_throughput.qe_against_references(tmp_path, lm=False)
    assert result["qe_rows"] == {"samples": 44, "held_out": 30, "pooled": 74}
    for key in ("qe_spearman", "qe_recall_worst20"):
        assert set(result[key]) == {"samples", "held_out", "pooled"}
        assert {"round_trip", "round_trip_min_field", "length_deviation", "grammar", "score"} <= set(
            result[key]["pooled"]
        )
