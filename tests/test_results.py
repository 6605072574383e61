"""The committed smoke results say where every number came from, and the letters accuracies reproduce."""
import json

import pytest

from lib import data, evaluate, inference, models, paths, pipeline, report

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
    if metrics["adapter"]:
        config = paths.ROOT / metrics["adapter"] / "adapter_config.json"
        assert config.is_file(), "committed adapter missing"
        base = json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]
        assert base in models.PRESETS or "/" in base and not base.startswith("/"), f"{config}: base named {base!r}"


def _committed(name: str) -> dict:
    return json.loads((SMOKE / "06_accuracy_analysis" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("side", ["base", "tuned"])
def test_committed_letters_accuracies_reproduce(side, tmp_path):
    """Re-score the committed adapter (and its base) on the same questions: within one question of the record."""
    comparison = _committed("comparison.json")
    assert comparison["mode"] == "letters"
    if not (paths.ROOT / comparison["data"]).exists():  # a fresh clone: notebook 03 writes the SYNTHETIC splits
        pipeline.run("smoke", only=["03"], results_root=tmp_path)
    adapter = comparison["tuned_adapter"] if side == "tuned" else None
    questions, _ = data.load(paths.resolve_source(comparison["data"]), "cosmos_qa_pt", splits=[comparison["split"]])
    rows = list(questions[comparison["split"]])
    assert len(rows) == comparison["n"]
    net, tokenizer = inference.load_for_eval(comparison["model"], adapter, quantize_4bit=comparison["load_in_4bit"])
    metrics, _ = evaluate.mc_run(net, tokenizer, rows, "letters", comparison["model"], adapter,
                                 seed=comparison["seed"])
    assert abs(metrics["accuracy"] - comparison[f"{side}_accuracy"]) <= 1 / comparison["n"] + 1e-9


def test_the_readme_table_is_the_committed_results():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    assert report.readme_with_table(readme, report.summary_table(SMOKE)) == readme, "run `python -m lib.report`"


def test_readme_block_replacement():
    text = f"intro\n{report.START}\nold\n{report.END}\nrest\n"
    assert report.readme_with_table(text, "| new |") == f"intro\n{report.START}\n| new |\n{report.END}\nrest\n"
    with pytest.raises(ValueError, match="no"):
        report.readme_with_table("no markers", "x")
