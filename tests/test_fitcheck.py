"""The GPU fit check (lib.fitcheck): its tiny CPU path, the rows it writes, and the estimator it holds to account.

The real 7B shapes need CUDA: those tests are skipped on CPU with the reason. Everything else runs the same code with
tiny shapes (2 layers, hidden 64, the real 32 000 vocabulary) on CPU in seconds.
"""

import json

import pytest
import torch

from lib import fitcheck, memory, models, paths, probes, train

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: `python -m lib.fitcheck --all` runs the real 7B shapes"
)
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
COMMITTED = paths.ROOT / "results"  # the committed files, whatever PTLLM_RESULTS_DIR says
COMMITTED_ACTIVATIONS = COMMITTED / "smoke" / "bench" / "fitcheck_activations.json"


@pytest.fixture(scope="module")
def tiny_row():
    """One tiny fit check in-process: LLaMA shape, checkpointing, paged 8-bit AdamW (sabia-canarim on rtx3090)."""
    return fitcheck.check("sabia-canarim", "rtx3090", steps=2, tiny=True)


def test_tiny_fit_check_trains_through_the_project_path(tiny_row):
    row = tiny_row
    assert set(fitcheck.FIELDS) <= set(row), "the results row lacks keys the issue names"
    assert row["ok"] and row["error"] is None, row["error"]
    assert row["optimizer_steps"] == 2 and row["s_per_step"] > 0 and row["tokens_per_s"] > 0
    assert row["padded_tokens_per_s"] >= row["tokens_per_s"]
    spec = row["architecture"]
    assert spec["model_type"] == "llama" and spec["vocab_size"] == 32000 and spec["num_hidden_layers"] == 2
    # 4-bit NF4 through lib.models.load_model: every projection of every decoder layer
    assert row["quantized_layers"] == 7 * spec["num_hidden_layers"]
    # every micro-batch padded to the preset's max_length (the worst case for memory)
    assert row["max_length"] == train.config_for("sabia-canarim").max_length == 1024
    assert row["positions_per_micro_batch"] == [row["per_device_batch"] * row["max_length"]]
    assert row["optimizer"] == "paged_adamw_8bit" and row["gradient_checkpointing"] and row["grad_accum"] == 2
    # the real tokenizer, offline: the one Sabiá-7B's twin carries (LLaMA's 32 000 ids), nothing remapped
    assert row["tokenizer"] == "sabia-7b-tiny" and row["token_ids"] == "as tokenized"
    assert row["data"] == "data/samples/canarim.jsonl"
    cfg = fitcheck.fit_config("sabia-canarim", "rtx3090", 2, tiny=True)
    assert row["estimate_gb"] == memory.estimate_for(cfg, spec)["total"]
    if not torch.cuda.is_available():
        assert row["gpu"] == "cpu (tiny)" and row["peak_allocated_gb"] is None and row["fits_budget"] is None
        assert row["peak_rss_gb"] > 0


@pytest.mark.slow
def test_all_runs_each_combination_in_its_own_process_and_writes_the_rows(tmp_path, tiny_row):
    """`--all` (here narrowed to one combination: Mistral shape, chat prompts, no checkpointing) via the CLI."""
    out = tmp_path / "fitcheck.json"
    out.write_text(json.dumps({"rows": [tiny_row]}))  # an earlier row of another combination is kept
    fitcheck.main(
        [
            "--all",
            "--tiny",
            "--preset",
            "zephyr-cosmosqa",
            "--hardware",
            "colab-a100",
            "--steps",
            "2",
            "--out",
            str(out),
        ]
    )
    written = json.loads(out.read_text())
    assert written["name"] == "fitcheck" and written["fields"] == list(fitcheck.FIELDS)
    rows = {(r["preset"], r["hardware"]): r for r in written["rows"]}
    assert set(rows) == {("sabia-canarim", "rtx3090"), ("zephyr-cosmosqa", "colab-a100")}
    row = rows["zephyr-cosmosqa", "colab-a100"]
    assert row["ok"], row["error"]
    assert set(fitcheck.FIELDS) <= set(row) and row["architecture"]["model_type"] == "mistral"
    assert row["data"] in ("data/samples/cosmos_qa_ptbr/train.jsonl", "data/samples/cosmos_qa_ptbr.jsonl")
    assert not row["gradient_checkpointing"] and row["positions_per_micro_batch"] == [2 * 512]


def test_every_preset_and_gpu_hardware_is_covered_and_grouped_by_model():
    pairs = fitcheck.combos()
    assert len(pairs) == len(train.PRESETS) * len(fitcheck.GPU_HARDWARE) and "smoke" not in fitcheck.GPU_HARDWARE
    models = [train.config_for(*pair).model for pair in pairs]
    assert models == sorted(models)  # each random model is built once, then deleted


def test_dry_run_plans_without_building_anything(capsys):
    plans = fitcheck.main(["--preset", "sabia-canarim", "--hardware", "colab-a100", "--dry-run"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(plans))
    (planned,) = plans
    assert planned["estimate_gb"] == memory.memory_estimate(train.config_for("sabia-canarim", "colab-a100"))["total"]
    assert planned["architecture"] == models.ARCHITECTURES["sabia-7b"] and planned["examples"] == 3 * 8
    assert 13 < planned["random_weights_on_disk_gb"] < 14  # 6.7B parameters in bf16


def test_a_failed_run_is_a_row_not_an_exception(tmp_path):
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"instruction": "palavra " * 3000, "input": "", "output": "ok"}) + "\n")
    row = fitcheck.check("sabia-canarim", "rtx3090", steps=1, tiny=True, source=source)
    assert not row["ok"] and row["error"].startswith("ValueError") and "max_length" in row["error"]
    assert set(fitcheck.FIELDS) <= set(row)


@cpu_only
def test_real_shapes_refuse_to_run_without_a_gpu():
    with pytest.raises(SystemExit):
        fitcheck.main(["--preset", "zephyr-cosmosqa", "--hardware", "rtx3090"])
    with pytest.raises(RuntimeError, match="--tiny"):
        fitcheck.check("zephyr-cosmosqa", "rtx3090")


def test_token_ids_are_taken_modulo_the_vocabulary_and_labels_keep_their_ignore_index():
    batch = {
        "input_ids": torch.tensor([[5, 40000, 0]]),
        "labels": torch.tensor([[-100, 40000, 7]]),
        "attention_mask": torch.tensor([[1, 1, 0]]),
    }
    remap = fitcheck.RemapTokenIds(lambda examples: {k: v.clone() for k, v in batch.items()}, vocab_size=32000)
    out = remap([])
    assert out["input_ids"].tolist() == [[5, 8000, 0]] and out["labels"].tolist() == [[-100, 8000, 7]]
    assert remap.remapped == 1 and remap.batches == [(2, 3)]


def test_speed_leaves_out_the_first_step():
    marks = [0.0, 10.0, 12.0, 14.0]  # start, then the end of 3 optimizer steps; the first one is slow
    batches = [(100, 400)] * 6  # 2 micro-batches per step
    got = fitcheck.speed(marks, batches, grad_accum=2)
    assert got["s_per_step"] == 2.0 and got["first_step_s"] == 10.0 and got["timed_steps"] == 2
    assert got["tokens_per_s"] == 100.0 and got["padded_tokens_per_s"] == 400.0


def test_tiny_architecture_keeps_type_vocabulary_and_ratios():
    for model, real in models.ARCHITECTURES.items():
        tiny = fitcheck.architecture(model, tiny=True)
        assert fitcheck.architecture(model) == real
        assert tiny["model_type"] == real["model_type"] and tiny["vocab_size"] == real["vocab_size"]
        assert tiny["hidden_size"] == 64 and tiny["num_hidden_layers"] == 2
        ratio = lambda s: s["num_key_value_heads"] / s["num_attention_heads"]  # noqa: E731
        assert ratio(tiny) == ratio(real)


@pytest.mark.parametrize("preset, hardware", [("sabia-canarim", "colab-a100"), ("zephyr-cosmosqa", "rtx3090")])
def test_fit_check_estimate_is_the_notebooks_estimate_on_real_shapes(preset, hardware):
    """Both architectures, with and without checkpointing, 32- and 8-bit AdamW."""
    cfg = fitcheck.fit_config(preset, hardware, steps=3)
    got = memory.estimate_for(cfg, fitcheck.architecture(cfg.model))
    expected = memory.memory_estimate(train.config_for(preset, hardware))
    assert got == {k: expected[k] for k in got}


# ---------------------------------------------------------------- the estimator's activation term, measured


@pytest.mark.parametrize("preset", ["sabia-canarim", "zephyr-cosmosqa"])
def test_activation_formula_is_what_autograd_saves(preset, tmp_path):
    """Tiny shapes, counted tensor by tensor in the GPU dtype chain: the estimator's formula to the byte."""
    probe = probes.activation_probe(preset, tiny=True, workdir=tmp_path)
    spec, cfg = probe["architecture"], train.config_for(preset)
    saved, kept = memory.activation_bytes_per_token(
        spec["hidden_size"],
        spec["intermediate_size"],
        spec["num_attention_heads"],
        spec["num_key_value_heads"],
        cfg.lora_r,
        cfg.lora_targets,
    )
    assert probe["linear_in_tokens"], "a seq^2 term: the attention kernel materialises scores"
    assert probe["saved_bytes_per_token_per_layer"] == saved, probe["middle_layer_breakdown"]
    assert probe["checkpoint_bytes_per_token_per_layer"] == kept == 4 * spec["hidden_size"]  # fp32 residual


def test_committed_real_width_activation_measurements_pin_the_estimator():
    """results/smoke/bench/fitcheck_activations.json: `--probe-activations` at the real 7B widths (CPU, ~1 min)."""
    committed = json.loads(COMMITTED_ACTIVATIONS.read_text(encoding="utf-8"))
    assert not committed["tiny"] and {r["preset"] for r in committed["rows"]} == set(train.PRESETS)
    for row in committed["rows"]:
        spec, cfg = row["architecture"], train.config_for(row["preset"])
        saved, kept = memory.activation_bytes_per_token(
            spec["hidden_size"],
            spec["intermediate_size"],
            spec["num_attention_heads"],
            spec["num_key_value_heads"],
            cfg.lora_r,
            cfg.lora_targets,
        )
        assert spec["hidden_size"] == models.ARCHITECTURES[cfg.model]["hidden_size"]
        assert row["saved_bytes_per_token_per_layer"] == saved and row["checkpoint_bytes_per_token_per_layer"] == kept
        assert saved > 1.25 * 34 * spec["hidden_size"]  # the old assumption was off by more than 25 %
        a100 = train.config_for(row["preset"], "colab-a100")  # no checkpointing: every layer keeps `saved`
        tokens, layers = a100.per_device_batch * a100.max_length, models.ARCHITECTURES[cfg.model]["num_hidden_layers"]
        assert memory.memory_estimate(a100)["activations"] == round(layers * saved * tokens / 1e9, 2)


def _committed_gpu_rows() -> list[dict]:
    rows = []
    for path in sorted(COMMITTED.glob("*/bench/fitcheck.json")):
        rows += [
            r
            for r in json.loads(path.read_text(encoding="utf-8"))["rows"]
            if not r.get("tiny") and r["ok"] and r.get("peak_device_gb")
        ]
    return rows


def test_committed_gpu_measurements_agree_with_the_estimator():
    """Pins the measured peaks committed from a GPU (`python -m lib.fitcheck --all`): the estimate within 25 %."""
    rows = _committed_gpu_rows()
    if not rows:
        pytest.skip(
            "no GPU fit-check measurements committed yet (results/<profile>/bench/fitcheck.json from "
            "`python -m lib.fitcheck --all` on a GPU)"
        )
    for row in rows:
        estimate = memory.memory_estimate(train.config_for(row["preset"], row["hardware"]))["total"]
        error = abs(estimate - row["peak_device_gb"]) / row["peak_device_gb"]
        assert error <= 0.25, (
            f"{row['preset']}/{row['hardware']} on {row['gpu']}: estimate {estimate} GB vs "
            f"measured {row['peak_device_gb']} GB"
        )


# ---------------------------------------------------------------- CUDA only


@needs_cuda
def test_gpu_fit_check_of_a_real_preset_measures_and_agrees_with_the_estimate(tmp_path):
    row = fitcheck.check("zephyr-cosmosqa", "rtx3090", steps=2, workdir=tmp_path)
    assert row["ok"], row["error"]
    assert row["peak_allocated_gb"] <= row["peak_reserved_gb"] <= row["peak_device_gb"] <= row["gpu_memory_gb"]
    assert row["fits_gpu"] and row["fits_budget"] is (row["peak_device_gb"] <= row["budget_gb"])
    assert row["quantized_layers"] == 7 * 32 and row["positions_per_micro_batch"] == [4 * 512]
    assert abs(row["estimate_error"]) <= 0.25, row


@needs_cuda
def test_tiny_fit_check_on_gpu_reports_gpu_peaks():
    row = fitcheck.check("zephyr-cosmosqa", "rtx3090", steps=2, tiny=True)
    assert row["ok"], row["error"]
    assert row["gpu"].endswith("(tiny)") and 0 < row["peak_allocated_gb"] <= row["peak_reserved_gb"]
