import json
from pathlib import Path

import nbformat
import pytest

from lib import data, paths, pipeline

NOTEBOOKS = pipeline.notebooks()
EXPECTED = {
    "01_translate_cosmos_qa",
    "02_format_canarim_prompts",
    "03_format_cosmos_qa_prompts",
    "04_qlora_canarim",
    "05_qlora_cosmos_qa",
    "06_accuracy_analysis",
    "07_instruction_following_eval",
    "08_chat",
    "09_pt_benchmarks",
}
# The whole chain, with the CPU-heavy parts cut down: 2 training steps, fewer evaluation questions.
QUICK = {
    "max_steps": 2,
    "05": {"validation_rows": 8},
    "06": {"limit": 16, "generate_limit": 4},
    "07": {"limit": 4, "max_new_tokens": 16},
    "08": {"limit": 2, "max_new_tokens": 16},
    "09": {"limit": 2, "tasks": "assin2_rte,enem_challenge", "max_new_tokens": 8},
}


def test_the_chain_notebooks_exist_in_number_order():
    stems = [p.stem for p in NOTEBOOKS]
    assert EXPECTED <= set(stems) and stems == sorted(stems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before commit"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_a_parameters_cell_and_uses_lib(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    source = "\n" + tagged[0].source
    for name in ("profile", "model", "limit", "output_dir"):
        assert f"\n{name} = " in source, f"{path.name}: parameter {name!r} missing"
    assert "\nsource = " in source or "\ndata = " in source, f"{path.name}: no data-source parameter"
    assert any("from lib import" in c.source for c in nb.cells if c.cell_type == "code")
    assert nb.cells[0].cell_type == "markdown"


@pytest.mark.slow
def test_every_notebook_runs_headless_in_the_smoke_profile(tmp_path):
    """The real `make pipeline` path: papermill over every notebook on the embedded model."""
    executed = pipeline.run("smoke", results_root=tmp_path, overrides=QUICK)
    assert [p.stem for p in executed] == [p.stem for p in NOTEBOOKS]
    benchmarks = json.loads((tmp_path / "smoke" / "09_pt_benchmarks" / "metrics.json").read_text())
    assert benchmarks["models"] == ["embedded", "04_qlora_canarim", "05_qlora_cosmos_qa"]  # base + both adapters
    assert {t: per["embedded"]["n"] for t, per in benchmarks["tasks"].items()} == {"assin2_rte": 2, "enem_challenge": 2}
    for stem in EXPECTED - {"09_pt_benchmarks"}:  # 09 reads fixed benchmark data: nothing is rejected, it fails
        out = tmp_path / "smoke" / stem
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["rejected_rows"] == 0, stem
        assert metrics["backend"] == "mt" if stem.startswith("01") else metrics["model"] == "embedded", stem
        assert list(out.glob("*.png")), stem
    for stem in ("04_qlora_canarim", "05_qlora_cosmos_qa"):
        metrics = json.loads((tmp_path / "smoke" / stem / "metrics.json").read_text())
        assert metrics["global_step"] == 2 and (tmp_path / "smoke" / stem / "adapter" / "final_adapter").is_dir()
    # 06 and 07 evaluated the adapters 05 and 04 trained, against their base models
    for stem in ("06_accuracy_analysis", "07_instruction_following_eval"):
        comparison = json.loads((tmp_path / "smoke" / stem / "comparison.json").read_text())
        assert comparison["n"] > 0 and "final_adapter" in json.dumps(comparison), stem
    _check_06_compares_base_and_adapter(tmp_path / "smoke" / "06_accuracy_analysis", n=QUICK["06"]["limit"])
    _check_07_compares_base_and_adapter(tmp_path / "smoke" / "07_instruction_following_eval", n=QUICK["07"]["limit"])
    canarim = json.loads((tmp_path / "smoke" / "02_format_canarim_prompts" / "metrics.json").read_text())
    assert canarim["token_lengths"]["train"]["n"] == canarim["splits"]["train"] > 0
    assert (paths.PROCESSED / "canarim_alpaca_pt" / "train.jsonl").exists()
    assert (paths.PROCESSED / "synthetic_mc_chat" / "validation.jsonl").exists()
    translation = json.loads((tmp_path / "smoke" / "01_translate_cosmos_qa" / "metrics.json").read_text())
    assert translation["done"] == translation["rows"] == 44 and translation["failed"] == 0  # offline, every sample
    assert translation["chrf"] is not None and translation["qe"]["rows"] == 44


def _check_06_compares_base_and_adapter(folder: Path, n: int):
    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["n"] == n and 0 <= comparison["mcnemar_p"] <= 1
    for key in ("base_accuracy", "tuned_accuracy", "base_ci95", "tuned_ci95"):
        assert comparison[key] is not None, key
    tuned = json.loads((folder / "metrics.json").read_text())
    assert tuned["adapter"].endswith("final_adapter") and tuned["accuracy"] == comparison["tuned_accuracy"]
    # next to chance and the rules that answer without reading; the base model's options scores; letter habits
    assert set(comparison["shortcut_baselines"]) == {"longest", "shortest", "max_overlap", "min_overlap", "chance"}
    assert comparison["shortcut_baselines"] == tuned["shortcut_baselines"]
    assert 0 <= comparison["base_options_acc_norm"] <= 1 and 0 <= comparison["base_options_accuracy"] <= 1
    assert (
        sum(comparison["base_pred_distribution"].values()) == sum(comparison["tuned_pred_distribution"].values()) == n
    )
    base = json.loads((folder / "base" / "metrics.json").read_text())
    assert base["adapter"] is None and base["accuracy"] == comparison["base_accuracy"]


def _check_07_compares_base_and_adapter(folder: Path, n: int):
    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["n"] == n
    for key in ("base_eos_stop_rate", "tuned_eos_stop_rate", "base_repeated_4gram_rate", "tuned_repeated_4gram_rate"):
        assert 0 <= comparison[key] <= 1, key
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in (
        "n",
        "eos_stop_rate",
        "rouge_l",
        "chrf",
        "bleu",
        "perplexity",
        "repeated_4gram_rate",
        "model",
        "adapter",
    ):
        assert key in metrics, key
    assert (folder / "side_by_side.md").exists() and (folder / "side_by_side.csv").exists()


def test_a_failing_notebook_stops_the_run_and_names_the_cell(tmp_path, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    for number, source in [("01", "raise RuntimeError('boom from the test')"), ("02", "print('never runs')")]:
        nb = nbformat.v4.new_notebook(
            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
        )
        nb.cells = [
            nbformat.v4.new_code_cell("profile = 'smoke'\noutput_dir = ''", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(source),
        ]
        nbformat.write(nb, folder / f"{number}_x.ipynb")
    with pytest.raises(SystemExit) as stop:
        pipeline.run("smoke", notebook_dir=folder, results_root=tmp_path / "results")
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "01_x.ipynb" in err and "boom from the test" in err
    assert not (tmp_path / "results" / "smoke" / "notebooks" / "02_x.ipynb").exists()


def test_profiles_only_override_known_notebooks():
    numbers = {p.stem[:2] for p in NOTEBOOKS}
    for profile, overrides in pipeline.PROFILES.items():
        assert set(overrides) <= numbers, profile


def test_per_notebook_overrides_and_results_placeholder(tmp_path):
    nb = pipeline.notebooks(["06"])[0]
    params = pipeline.parameters_for(
        nb, "smoke", {"limit": 3, "06": {"mode": "options"}, "07": {"limit": 9}}, results_root=tmp_path
    )
    assert params["limit"] == 3 and params["mode"] == "options"
    assert params["adapter"] == str(tmp_path / "smoke" / "05_qlora_cosmos_qa" / "adapter" / "final_adapter")


@pytest.mark.slow
def test_notebook_01_output_feeds_03_unchanged(tmp_path):
    """01 (offline MT) writes a PT dataset; 03 reads that folder as its source and keeps every row as it is."""
    translated, processed = tmp_path / "cosmos_qa_ptbr", tmp_path / "processed"
    pipeline.run(
        "smoke",
        only=["01", "03"],
        results_root=tmp_path,
        overrides={
            "01": {"dataset_dir": str(translated)},
            "03": {"source": str(translated), "processed_dir": str(processed)},
        },
    )
    written = data.read_jsonl(translated / "train.jsonl")
    assert len(written) == 44 and (translated / "cache.jsonl").exists() and (translated / "flagged.jsonl").exists()
    metrics = json.loads((tmp_path / "smoke" / "03_format_cosmos_qa_prompts" / "metrics.json").read_text())
    assert metrics["rejected_rows"] == 0 and metrics["validation"] == {
        "train": {"read": 44, "kept": 44, "rejected": 0, "beyond_limit": 0}
    }
    assert any("run bookkeeping" in w for w in metrics["warnings"])  # cache/ledger/flagged are not splits
    loaded, _ = data.load(translated, "cosmos_qa_pt")
    assert list(loaded["train"]) == written
    chat = data.read_jsonl(processed / "cosmos_qa_ptbr_chat" / "train.jsonl")
    assert [r["id"] for r in chat] == [r["id"] for r in written]


def test_the_full_profile_reads_notebook_01s_output_with_one_parameter():
    plan = dict(pipeline.plan("full", only=["03", "05", "06"], cosmos_pt="01"))
    assert plan["03_format_cosmos_qa_prompts.ipynb"]["source"] == pipeline.COSMOS_PT_FROM_01
    assert plan["05_qlora_cosmos_qa.ipynb"]["source"] == pipeline.COSMOS_PT_FROM_01
    assert (
        plan["06_accuracy_analysis.ipynb"]["data"]
        == plan["06_accuracy_analysis.ipynb"]["train_data"]
        == pipeline.COSMOS_PT_FROM_01
    )
    assert (
        dict(pipeline.plan("full", only=["03"]))["03_format_cosmos_qa_prompts.ipynb"]["source"]
        == pipeline.COSMOS_PT_HUB
    )
    assert dict(pipeline.plan("full", only=["01"]))["01_translate_cosmos_qa.ipynb"]["backend"] == "mt"  # no key


@pytest.mark.slow
def test_pipeline_json_marks_resumed_notebooks_and_fresh_starts_them_over(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    trains = (
        "import json, pathlib\nout = pathlib.Path(output_dir)\nout.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'metrics.json').write_text(json.dumps({'resumed_from': None if fresh else 'output_dir/checkpoint-2', 'dtype': 'bf16'}))"
    )
    for number, declared, source in [("01", "", "print('no training')"), ("02", "\nfresh = False", trains)]:
        nb = nbformat.v4.new_notebook(
            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
        )
        nb.cells = [
            nbformat.v4.new_code_cell(
                f"profile = 'smoke'\noutput_dir = ''{declared}", metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell(source),
        ]
        nbformat.write(nb, folder / f"{number}_x.ipynb")
    results = tmp_path / "results"
    pipeline.run("smoke", notebook_dir=folder, results_root=results)
    record = json.loads((results / "smoke" / "pipeline.json").read_text())
    assert record["resumed"] == {"02_x": "output_dir/checkpoint-2"} and record["fresh"] is False
    assert record["training_dtypes"] == {"02_x": "bf16"}
    pipeline.run("smoke", notebook_dir=folder, results_root=results, fresh=True)  # 01 declares no `fresh`: untouched
    record = json.loads((results / "smoke" / "pipeline.json").read_text())
    assert record["resumed"] == {} and record["fresh"] is True
