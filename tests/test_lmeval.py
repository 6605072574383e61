"""lm-evaluation-harness interop (lib.lmeval, configs/lm_eval): the Cosmos QA PT tasks render exactly the prompt and
tokens our scorer scores, and lm-eval's accuracies agree with ours on the shipped questions (embedded model, one
loaded model serving both)."""

import json

import pytest

from lib import data as lib_data
from lib import inference, lmeval, paths

pytest.importorskip("lm_eval")

FOLDER = paths.SAMPLES / "cosmos_qa_ptbr"  # the shipped PT questions: a folder with one file per split
DATA = FOLDER if (FOLDER / "validation.jsonl").is_file() else paths.SAMPLES / "cosmos_qa_ptbr.jsonl"


@pytest.fixture(scope="module")
def loaded():
    """The embedded model as notebook 06 scores it (4-bit NF4), wrapped once by lm-eval's HF backend."""
    net, tokenizer = inference.load_for_eval("embedded", quantize_4bit=True)
    return net, tokenizer, lmeval.harness(net, tokenizer)


@pytest.fixture(scope="module")
def rows():
    loaded_rows, _ = lib_data.load(DATA, "cosmos_qa_pt", splits=["validation"], default_split="validation")
    return list(loaded_rows["validation"])


@pytest.mark.parametrize("mode", ["letters", "options"])
def test_lm_eval_sees_byte_identical_prompts_and_token_ids(loaded, rows, mode):
    """Every shipped question, both variants: context + continuation is our rendered text, tokenized to the same
    ids; `letters` scores exactly our letter tokens (" A".." D" after "Alternativa")."""
    _, tokenizer, lm = loaded
    task = lmeval.build_task(mode, str(DATA), "validation")
    built = lmeval.requests(lm, task)
    assert [b["id"] for b in built] == [r["id"] for r in rows]
    check = lmeval.compare_inputs(lm, tokenizer, rows, built, mode)
    assert check["prompts_identical"], check["text_mismatches"]
    assert check["token_ids_identical"], check["token_id_mismatches"]
    assert not check["scored_token_mismatches"]
    if mode == "letters":
        assert check["scored_tokens_identical"]
        assert [cont for _, cont in built[0]["arguments"]] == [" A", " B", " C", " D"]
    else:  # lm-eval also scores the whitespace that ends the chat template (the same term for the four options)
        assert all(not extra.strip() for extra in check["lm_eval_also_scores"])


def test_task_data_source_is_a_parameter(tmp_path, rows):
    """A folder with one file per split, a single file, and a CSV: anything lib.data.load accepts."""
    folder = tmp_path / "cosmos"
    lib_data.write_jsonl(rows[:5], folder / "validation.jsonl")
    lib_data.write_jsonl(rows[5:8], folder / "train.jsonl")
    import pandas as pd

    pd.DataFrame(rows[:3]).to_csv(tmp_path / "three.csv", index=False)
    assert [d["id"] for d in lmeval.build_task("letters", str(folder), "validation").eval_docs] == [
        r["id"] for r in rows[:5]
    ]
    assert len(lmeval.build_task("options", str(folder), "train").eval_docs) == 3
    assert len(lmeval.build_task("letters", str(tmp_path / "three.csv"), "validation").eval_docs) == 3
    with pytest.raises(FileNotFoundError):
        lmeval.build_task("letters", str(tmp_path / "missing.jsonl"), "validation")


@pytest.mark.parametrize("mode, limit", [("letters", 8), ("options", 4)])
@pytest.mark.slow
def test_lm_eval_agrees_with_our_scorer(loaded, tmp_path, mode, limit):
    net, tokenizer, _ = loaded
    report = lmeval.crosscheck(net, tokenizer, str(DATA), "validation", mode, limit, tmp_path, model="embedded")
    one = 1 / report["n"] + 1e-9
    assert report["n"] == limit and report["load_in_4bit"]
    assert abs(report["lm_eval_accuracy"] - report["project_accuracy"]) <= one
    assert len(report["prediction_disagreements"]) <= 1
    assert report["prompts_identical"] and report["token_ids_identical"]
    # Same model, same tokens: the scores themselves agree. Not to the bit: in 4-bit on CPU a row's logits move a
    # little with the batch it is padded into (our scorer pads left to batch 16, lm-eval right to batch 4); measured
    # <= 0.09 nats, where a wrong prompt or token moves them by whole nats. (In fp32 they agree to 1e-5.)
    assert report["max_abs_logprob_diff"] < 0.25
    if mode == "options":
        assert abs(report["lm_eval_acc_bytes"] - report["project_acc_norm"]) <= one
        assert abs(report["lm_eval_acc_norm"] - report["project_acc_norm"]) <= one
    written = json.loads((tmp_path / "crosscheck.json").read_text())
    for key in (
        "n",
        "mode",
        "lm_eval_accuracy",
        "project_accuracy",
        "lm_eval_acc_norm",
        "project_acc_norm",
        "lm_eval_seconds",
        "project_seconds",
    ):
        assert key in written
    assert list(tmp_path.glob("lm_eval_results_*.json"))  # lm-eval's own results file, as its CLI writes it
    results = json.loads(next(tmp_path.glob("lm_eval_results_*.json")).read_text())
    assert lmeval.TASKS[mode] in results["results"]


def test_cli_rejects_an_unknown_mode():
    with pytest.raises(SystemExit):
        lmeval.main(["--mode", "generate", "--output-dir", "unused"])


def test_adapter_folder_is_checked_before_anything_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        lmeval.main(["--adapter", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--limit", "1"])
