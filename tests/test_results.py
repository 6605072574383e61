"""The committed smoke results say where every number came from, and the letters accuracies reproduce."""

import json
import os
import subprocess
import sys

import pytest

from lib import data, evaluate, inference, models, paths, report

SMOKE = paths.RESULTS / "smoke"
METRICS = sorted(SMOKE.glob("*/metrics.json"))


def test_every_notebook_of_the_chain_has_committed_metrics():
    stems = {p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert stems == {p.parent.name for p in METRICS}


@pytest.mark.parametrize("path", METRICS, ids=lambda p: p.parent.name)
def test_committed_metrics_record_their_provenance(path):
    metrics = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in paths.PROVENANCE if k not in metrics]
    assert not missing, f"{path}: no {missing}"
    assert metrics["notebook"] == path.parent.name and metrics["profile"] == "smoke" and metrics["model"]
    for key in ("adapter", "data"):  # repo-relative: the results must not name one machine's folders
        assert not str(metrics[key] or "").startswith("/"), f"{path}: absolute {key} {metrics[key]}"
    adapters = (
        metrics["adapter"] if isinstance(metrics["adapter"], list) else [metrics["adapter"]] * bool(metrics["adapter"])
    )
    for adapter in adapters:  # notebook 09 scores several adapters beside their base
        assert not adapter.startswith("/"), f"{path}: absolute adapter {adapter}"
        config = paths.ROOT / adapter / "adapter_config.json"
        assert config.is_file(), "committed adapter missing"
        base = json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]
        assert base in models.PRESETS or "/" in base and not base.startswith("/"), f"{config}: base named {base!r}"


BINARY = (".png", ".safetensors", ".bin", ".pt", ".pth", ".parquet", ".arrow")


def test_no_committed_result_names_a_machine_path():
    """Every tracked text file under results/ (metrics, summaries, pipeline.json, model and dataset cards) is free of
    absolute paths: a home, temp, Colab or Drive folder, a Windows drive path, `~/`, or this checkout's own folder."""
    tracked = subprocess.run(
        ["git", "ls-files", "results"], cwd=paths.ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tracked) > 50
    found = []
    for name in tracked:
        if name.endswith(BINARY):
            continue
        for number, line in enumerate((paths.ROOT / name).read_text(encoding="utf-8").splitlines(), start=1):
            found += [f"{name}:{number}: {hit}" for hit in paths.machine_paths(line)]
    assert not found, "absolute machine paths in committed results:\n" + "\n".join(found[:20])


@pytest.mark.parametrize(
    "text, hit",
    [
        ('"checkpoints": "/home/ana/lab/results/smoke/04/adapter"', "/home/ana/lab/results/smoke/04/adapter"),
        ('"resumed_from": "/content/drive/MyDrive/lab/x/checkpoint-2"', "/content/drive/MyDrive/lab/x/checkpoint-2"),
        ('"dir": "/tmp/pytest-1/run"', "/tmp/pytest-1/run"),
        ('"dir": "C:\\\\Users\\\\ana\\\\run"', "C:\\\\Users"),
        ("see ~/runs/x", "~/runs/x"),
    ],
)
def test_the_scan_finds_machine_paths(text, hit):
    assert any(h.startswith(hit) for h in paths.machine_paths(text)), paths.machine_paths(text)


@pytest.mark.parametrize(
    "text",
    [
        "results/smoke/04_qlora_canarim/adapter",
        "https://huggingface.co/datasets/x/home/y",
        "allenai/cosmos_qa",
        "persist_dir/smoke/04/final_adapter",
        "ratio 3/4 and 1/2",
    ],
)
def test_the_scan_leaves_repo_paths_urls_and_hub_ids_alone(text):
    assert paths.machine_paths(text) == []


@pytest.mark.parametrize(
    "path, anchors, written",
    [
        (paths.ROOT / "results" / "smoke" / "x" / "adapter", {}, "results/smoke/x/adapter"),
        (
            "/content/drive/MyDrive/lab/smoke/04/checkpoint-2",
            {"persist_dir": "/content/drive/MyDrive/lab"},
            "persist_dir/smoke/04/checkpoint-2",
        ),
        ("/tmp/run/checkpoint-2", {"output_dir": "/tmp/run"}, "output_dir/checkpoint-2"),
        ("/tmp/run", {"output_dir": "/tmp/run", "persist_dir": None}, "output_dir"),
        ("/home/ana/data.jsonl", {}, "<outside the repository>/data.jsonl"),
        ("C:\\Users\\ana\\data.jsonl", {}, "<outside the repository>/data.jsonl"),
        ("allenai/cosmos_qa", {}, "allenai/cosmos_qa"),
        ("data/samples/canarim.jsonl", {}, "data/samples/canarim.jsonl"),
        (None, {}, None),
    ],
)
def test_paths_are_written_portably(path, anchors, written):
    assert paths.portable(path, **anchors) == written
    assert not paths.machine_paths(str(written))


def _committed(name: str) -> dict:
    return json.loads((SMOKE / "06_accuracy_analysis" / name).read_text(encoding="utf-8"))


def rescore(folder: str) -> None:
    """Re-score the committed base + adapter, and the base with the adapter switched off (one load, as notebook 06
    does), on the committed questions; predictions to `folder`/{tuned,base}.jsonl."""
    comparison = _committed("comparison.json")
    questions, _ = data.load(paths.resolve_source(comparison["data"]), "cosmos_qa_pt", splits=[comparison["split"]])
    rows = list(questions[comparison["split"]])
    net, tokenizer = inference.load_for_eval(
        comparison["model"], comparison["tuned_adapter"], quantize_4bit=comparison["load_in_4bit"]
    )
    data.write_jsonl(evaluate.evaluate_mc(net, tokenizer, rows, "letters"), f"{folder}/tuned.jsonl")
    with net.disable_adapter():
        data.write_jsonl(evaluate.evaluate_mc(net, tokenizer, rows, "letters"), f"{folder}/base.jsonl")


def _other_kernel_level() -> str:
    """One instruction-set level below what torch picked here: the kernels another CPU would run."""
    import torch

    return {"AVX512": "avx2"}.get(torch.backends.cpu.get_cpu_capability(), "default")


@pytest.fixture(scope="module")
def rescored(tmp_path_factory):
    """Both sides re-scored once, in a subprocess on torch's kernels one instruction-set level down (as on another
    CPU: the committed runs used this machine's own)."""
    folder = tmp_path_factory.mktemp("rescored")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": _other_kernel_level()}
    subprocess.run(
        [sys.executable, "-c", f"from tests.test_results import rescore; rescore({str(folder)!r})"],
        cwd=paths.ROOT,
        env=env,
        check=True,
    )
    return folder


@pytest.mark.parametrize("side", ["base", "tuned"])
@pytest.mark.slow
def test_committed_letters_predictions_reproduce(side, rescored):
    """Every answer that was not a near-tie (top two letters within `evaluate.NEAR_TIE`) comes out the same, and the
    counts of correct answers agree with comparison.json."""
    comparison = _committed("comparison.json")
    assert comparison["mode"] == "letters"
    committed = data.read_jsonl(
        SMOKE / "06_accuracy_analysis" / ("base/" if side == "base" else "") / "predictions.jsonl"
    )
    assert len(committed) == comparison["n"]
    assert sum(p["correct"] for p in committed) == round(comparison[f"{side}_accuracy"] * comparison["n"])
    report = evaluate.reproduction(committed, data.read_jsonl(rescored / f"{side}.jsonl"))
    assert not report["unexplained_flips"], report
    assert abs(report["correct_rescored"] - report["correct_committed"]) <= len(report["flips"])


def test_reproduction_allows_flips_only_on_near_ties():
    def run(*answers):
        return [
            {"id": str(i), "pred": max(p, key=p.get), "probs": p, "correct": max(p, key=p.get) == "A"}
            for i, p in enumerate(answers)
        ]

    committed = run({"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1}, {"A": 0.3, "B": 0.3 - 1e-4, "C": 0.2, "D": 0.2 + 1e-4})
    near_tie_moved = run({"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1}, {"A": 0.3 - 1e-4, "B": 0.3, "C": 0.2, "D": 0.2})
    report = evaluate.reproduction(committed, near_tie_moved)
    assert report["flips"] == ["1"] and report["near_ties"] == ["1"] and not report["unexplained_flips"]
    assert (report["correct_committed"], report["correct_rescored"]) == (2, 1)
    clear_answer_moved = run({"A": 0.2, "B": 0.5, "C": 0.2, "D": 0.1}, committed[1]["probs"])
    assert evaluate.reproduction(committed, clear_answer_moved)["unexplained_flips"] == ["0"]
    with pytest.raises(ValueError, match="same questions"):
        evaluate.reproduction(committed, near_tie_moved[:1])


def test_the_readme_table_is_the_committed_results():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    assert report.readme_with_table(readme, report.summary_table(SMOKE)) == readme, "run `python -m lib.report`"
    table = report.bench_table(SMOKE)
    assert report.readme_with_table(readme, table, report.BENCH_START, report.BENCH_END) == readme, (
        "run `python -m lib.report`"
    )
    assert len(table.splitlines()) == 2 + len(report.BENCH_ROWS)  # every benchmark has a committed result


def test_the_eval_benchmark_records_the_shared_prompt_rows():
    bench = json.loads((SMOKE / "bench" / "eval_throughput.json").read_text(encoding="utf-8"))
    for key in (
        "ratio",
        "target",
        "ratio_shared_vs_options",
        "ratio_shared_vs_lm_eval_options",
        "same_predictions_shared",
        "same_predictions",
    ):
        assert key in bench, key
    assert bench["same_predictions_shared"] is True and bench["same_predictions"] is True


def test_readme_block_replacement():
    text = f"intro\n{report.START}\nold\n{report.END}\nrest\n"
    assert report.readme_with_table(text, "| new |") == f"intro\n{report.START}\n| new |\n{report.END}\nrest\n"
    with pytest.raises(ValueError, match="no"):
        report.readme_with_table("no markers", "x")
