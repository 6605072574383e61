import pytest

from lib import data, evaluate, hub, inference, memory, models, paths, prompts, synthetic, train

# ---------------------------------------------------------------- presets on the real architectures (meta device)


def test_sabia_preset_reproduces_the_prior_trainable_parameter_count():
    assert memory.lora_parameter_count(train.config_for("sabia-canarim")) == 25_165_824


def test_zephyr_presets_parameter_counts():
    assert memory.lora_parameter_count(train.config_for("zephyr-cosmosqa")) == 32 * (
        2 * 16 * (4096 + 4096) + 2 * 16 * (4096 + 1024) + 2 * 16 * (4096 + 14336)
    )
    v2 = train.config_for("zephyr-cosmosqa-v2")
    assert v2.lora_r == 32 and v2.epochs == 3 and v2.learning_rate == 4e-5  # inherits the rest
    assert memory.lora_parameter_count(v2) == 2 * memory.lora_parameter_count(train.config_for("zephyr-cosmosqa"))


def test_hardware_variants_keep_the_effective_batch():
    a100 = train.config_for("zephyr-cosmosqa", "colab-a100")
    rtx = train.config_for("zephyr-cosmosqa", "rtx3090")
    assert a100.per_device_batch * a100.grad_accum == rtx.per_device_batch * rtx.grad_accum == 32
    assert rtx.gradient_checkpointing and "8bit" in rtx.optimizer
    smoke = train.config_for("zephyr-cosmosqa", "smoke")
    assert smoke.model == "embedded" and smoke.data == "data/samples/cosmos_qa_ptbr"
    assert smoke.validation_from == "train"  # the corpus's validation split stays unseen until notebook 06
    with pytest.raises(ValueError, match="unknown preset"):
        train.config_for("nope")


# ---------------------------------------------------------------- memory estimator


def test_memory_estimator_on_known_cases():
    rtx = memory.memory_estimate(train.config_for("zephyr-cosmosqa", "rtx3090"))
    assert 3.5 < rtx["weights"] < 5.0  # 7.2B parameters in 4-bit, embeddings in 16-bit
    assert rtx["fits"] and rtx["total"] < 24
    # The same batch without checkpointing on a 24 GB card: the estimator must warn.
    no_ckpt = memory.memory_estimate(
        train.config_for("zephyr-cosmosqa", "rtx3090", per_device_batch=16, gradient_checkpointing=False)
    )
    assert not no_ckpt["fits"] and "exceeds" in no_ckpt["warning"]
    base = dict(
        n_params=7_000_000_000, vocab=32000, hidden=4096, layers=32, lora_params=20_000_000, batch=4, seq_len=512
    )
    with_ckpt = memory.estimate_memory_gb(**base, gradient_checkpointing=True)
    without = memory.estimate_memory_gb(**base, gradient_checkpointing=False)
    assert with_ckpt["activations"] < without["activations"] and with_ckpt["weights"] == without["weights"]
    assert memory.estimate_memory_gb(**{**base, "batch": 8}, gradient_checkpointing=False)[
        "activations"
    ] == pytest.approx(2 * without["activations"], rel=0.01)
    assert memory.memory_estimate(train.config_for("zephyr-cosmosqa", "smoke"))["total"] is None


# ---------------------------------------------------------------- a real collated batch


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """A real SFTTrainer (4-bit embedded model + LoRA) per task, on 4 examples."""
    sources = {
        "sabia-canarim": lambda cfg: train.load_task_data(cfg)[0]["train"],
        "zephyr-cosmosqa": lambda cfg: synthetic.generate(seed=2, sizes={"train": 4})["train"],
    }
    out = {}
    for preset, rows_for in sources.items():
        # fp32: these tests check labels, batches and scoring paths to the last bit (bf16 steps: their own test)
        cfg = train.config_for(preset, "smoke", per_device_batch=4, eval_steps=1000, save_steps=1000, dtype="fp32")
        rows = rows_for(cfg).select(range(4))
        tokenizer = models.load_tokenizer(cfg.model)
        train.prepare_pad_token(tokenizer)
        examples = train.training_examples(rows, cfg, tokenizer)
        trainer = train.build_trainer(cfg, examples, None, tmp_path_factory.mktemp(preset), tokenizer=tokenizer)
        out[preset] = (trainer, tokenizer, rows)
    return out


def _batch(trainer):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


def test_canarim_batch_supervises_only_the_completion_and_keeps_eos(trainers):
    trainer, tokenizer, rows = trainers["sabia-canarim"]
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    batch = _batch(trainer)
    for i, row in enumerate(rows):
        formatted = prompts.format_alpaca_pt(row, tokenizer)
        n_prompt = len(tokenizer(formatted["prompt"])["input_ids"])
        labels, ids, mask = batch["labels"][i].tolist(), batch["input_ids"][i].tolist(), batch["attention_mask"][i]
        real = int(mask.sum())
        assert all(label == -100 for label in labels[:n_prompt]), "prompt tokens must not be supervised"
        supervised = [label for label in labels if label != -100]
        assert supervised and supervised[-1] == tokenizer.eos_token_id, "the last supervised label is EOS"
        assert all(label == -100 for label in labels[real:]), "padding must not be supervised"
        assert ids[:real].count(tokenizer.eos_token_id) == supervised.count(tokenizer.eos_token_id) == 1
        # Training sees exactly the text inference renders (lib.prompts), tokenized the same way (BOS included).
        assert ids[:real] == tokenizer(formatted["text"])["input_ids"]
        assert ids[:n_prompt] == inference.encode(tokenizer, formatted["prompt"], plain_text=True)


def test_scoring_only_supervised_positions_gives_the_same_loss(trainers):
    """The CPU speed-up (LM head only where labels are) changes nothing but the time."""
    import torch
    import trl.trainer.utils as trl_utils

    trainer, _, _ = trainers["zephyr-cosmosqa"]
    compact = trl_utils._use_triton
    assert compact(torch.device("cpu")), "build_trainer should have switched CPU scoring to supervised positions"
    trainer.model.eval()  # no dropout: two forward passes must see the same network
    batch = trainer._prepare_inputs(_batch(trainer))
    with torch.no_grad():
        fast = trainer.compute_loss(trainer.model, dict(batch))
        trl_utils._use_triton = compact.original
        try:
            full = trainer.compute_loss(trainer.model, dict(batch))
        finally:
            trl_utils._use_triton = compact
    assert torch.allclose(fast, full, rtol=1e-5, atol=1e-6), (fast, full)


@pytest.mark.slow
def test_every_lora_weight_still_learns_after_an_evaluation(tmp_path):
    """Regression: bitsandbytes' CPU inference packing (taken in eval mode) cut every gradient through 4-bit layers
    after the first evaluation, silently freezing the LoRA weights upstream of them."""
    from transformers import TrainerCallback

    cfg = train.config_for(
        "sabia-canarim",
        "smoke",
        model="embedded-small",
        max_steps=3,
        eval_steps=1,
        save_steps=1000,
        per_device_batch=2,
        batch_size=2,
        warmup_steps=0,
        train_rows=6,
        validation_rows=2,
    )
    splits, _ = train.load_task_data(cfg)
    tokenizer = models.load_tokenizer(cfg.model)
    train.prepare_pad_token(tokenizer)
    trainer = train.build_trainer(
        cfg,
        train.training_examples(splits["train"], cfg, tokenizer),
        train.training_examples(splits["validation"], cfg, tokenizer),
        tmp_path,
        tokenizer=tokenizer,
    )
    missing = []

    class GradientCheck(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            missing.append([n for n, p in trainer.model.named_parameters() if p.requires_grad and p.grad is None])

    trainer.add_callback(GradientCheck())
    trainer.train()
    assert len(missing) == 3 and missing == [[], [], []], "LoRA weights without gradient after an evaluation"
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    # step 0 (eval_on_start: the base model) and after each of the 3 steps: the evaluated model changes every time
    assert len(evals) == 4 and len(set(evals)) == 4


def test_option_rotations_move_the_label_with_its_option():
    rows = list(synthetic.generate(seed=5, sizes={"train": 40})["train"])
    for row in rows:
        rotated = train.rotated_options(row, 4)
        assert rotated[0] == row and len({r[r["Label"]] for r in rotated}) == 1  # same right answer every time
        for r in rotated:
            assert sorted(r[k] for k in "ABCD") == sorted(row[k] for k in "ABCD")
            none = [k for k in "ABCD" if r[k].startswith("Nenhuma")]
            assert none == [k for k in "ABCD" if row[k].startswith("Nenhuma")]  # "none of the above" stays put
        if not row[row["Label"]].startswith("Nenhuma"):
            assert len({r["Label"] for r in rotated}) == len(rotated)  # the right letter moves every time
    assert train.rotated_options(rows[0], 1) == [rows[0]]


def test_cosmos_batch_matches_the_inference_rendering(trainers):
    trainer, tokenizer, rows = trainers["zephyr-cosmosqa"]
    batch = _batch(trainer)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    for i, row in enumerate(rows):
        rendered = prompts.render_cosmos(row, tokenizer)
        real = int(batch["attention_mask"][i].sum())
        ids, labels = batch["input_ids"][i].tolist()[:real], batch["labels"][i].tolist()
        assert ids == tokenizer(rendered["text"], add_special_tokens=False)["input_ids"]
        n_prompt = len(tokenizer(rendered["prompt"], add_special_tokens=False)["input_ids"])
        assert all(label == -100 for label in labels[:n_prompt])
        supervised = tokenizer.decode([label for label in labels if label != -100])
        assert supervised.startswith(f"Alternativa {row['Label']}") and end_of_turn in labels
        assert all(label == -100 for label in labels[real:])
        # the letters scorer reads the answer at exactly the position training supervises
        prefix, letter_ids = evaluate.letter_tokens(tokenizer, rendered["prompt"])
        assert ids[: len(prefix)] == prefix and labels[len(prefix)] == letter_ids["ABCD".index(row["Label"])]


def test_overlong_examples_are_dropped_and_reported(trainers):
    _, tokenizer, rows = trainers["sabia-canarim"]
    cfg = train.config_for("sabia-canarim", "smoke")
    examples = train.training_examples(rows, cfg, tokenizer)
    kept, report = train.drop_overlong(examples, tokenizer, max_length=40)
    assert report["examples"] == 4 and report["over_max_length"] == 4 - len(kept) and report["tokens_over"] > 0


def test_chat_examples_are_measured_in_tokens(trainers):
    """Regression: transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True), whose len() is 2
    (its keys): no chat example was ever found overlong."""
    _, tokenizer, rows = trainers["zephyr-cosmosqa"]
    examples = train.training_examples(rows, train.config_for("zephyr-cosmosqa", "smoke"), tokenizer)
    rendered = prompts.render_cosmos(rows[0], tokenizer)
    n = len(inference.encode(tokenizer, rendered["prompt"] + rendered["completion"]))
    assert train.token_length(examples[0], tokenizer) == n > 50
    kept, report = train.drop_overlong(examples, tokenizer, max_length=50)
    assert len(kept) == 0 and report["over_max_length"] == 4


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes_and_ends_at_the_planned_step(tmp_path):
    """SIGKILL a real training run after its first checkpoint, rerun the same command, check the continuation."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from lib import data, paths

    source = tmp_path / "mc"
    source.mkdir()
    for split, ds in synthetic.generate(seed=7, sizes={"train": 12, "validation": 2}).items():
        data.write_jsonl(ds, source / f"{split}.jsonl")
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lib.train",
        "--preset",
        "zephyr-cosmosqa",
        "--hardware",
        "smoke",
        "--model",
        "embedded-small",
        "--source",
        str(source),
        "--output-dir",
        str(out),
        "--max-steps",
        "4",
        "--save-steps",
        "2",
        "--eval-steps",
        "100",
        "--batch-size",
        "2",
        "--per-device-batch",
        "2",
    ]
    process = subprocess.Popen(command, cwd=paths.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.5)
    time.sleep(1.0)  # let the checkpoint finish writing (its files are written before trainer_state.json)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "final_adapter").exists() and hub.last_checkpoint(out).endswith("checkpoint-2")
    result = subprocess.run(command, cwd=paths.ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "final_adapter" / "training_summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 4
    steps = [entry["step"] for entry in summary["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3, 4]  # continuous: no step lost, none repeated
    for name in ("optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):
        assert (out / "checkpoint-4" / name).exists(), name
    assert any(p.name.startswith("rng_state") for p in (out / "checkpoint-4").iterdir())
    assert (out / "final_adapter" / "adapter_config.json").exists()
    # What a Hub push would upload names no machine path, though this run lived in an absolute temp folder
    assert summary["resumed_from"] == "output_dir/checkpoint-2" and summary["checkpoints"] == "output_dir"
    plan = hub.upload_plan(out / "final_adapter", "me/adapter")
    assert "README.md" in plan["files"] and "training_summary.json" in plan["files"]
    for name in plan["files"]:
        if not name.endswith(".safetensors"):
            text = (out / "final_adapter" / name).read_text(encoding="utf-8")
            assert not paths.machine_paths(text) and str(tmp_path) not in text, (name, paths.machine_paths(text))


# ---------------------------------------------------------------- data sources (one rule, lib.data.train_validation)


def test_a_single_file_trains_with_a_seeded_hold_out(tmp_path):
    single = paths.SAMPLES / "cosmos_qa_ptbr" / "train.jsonl"
    cfg = train.config_for("zephyr-cosmosqa", "rtx3090")
    splits, _ = train.load_task_data(cfg, str(single))
    n = len(splits["train"]) + len(splits["validation"])
    assert len(splits["validation"]) == n // 10 and not set(splits["train"]["id"]) & set(splits["validation"]["id"])


def test_a_preset_hold_out_larger_than_a_small_source_is_clamped(capsys):
    cfg = train.config_for("sabia-canarim", "rtx3090")
    splits, _ = train.load_task_data(cfg, "data/samples/canarim.jsonl")
    assert (len(splits["train"]), len(splits["validation"])) == (87, 9)
    assert "instead of the 1500 asked for" in capsys.readouterr().out


def test_smoke_cosmos_chooses_steps_on_train_and_never_reads_validation():
    cfg = train.config_for("zephyr-cosmosqa", "smoke")
    splits, _ = train.load_task_data(cfg)
    corpus, _ = data.load(paths.SAMPLES / "cosmos_qa_ptbr", "cosmos_qa_pt")
    held_out = set(splits["validation"]["id"])
    assert len(held_out) == cfg.validation_rows and held_out <= set(corpus["train"]["id"])
    assert not (held_out | set(splits["train"]["id"])) & set(corpus["validation"]["id"])


def test_learning_curve_merges_eval_loss_and_held_out_accuracy():
    log = [
        {"step": 0, "eval_loss": 9.1},
        {"step": 0, "eval_letters_accuracy": 0.25},
        {"step": 3, "loss": 4.0},
        {"step": 5, "eval_loss": 2.0},
        {"step": 5, "eval_letters_accuracy": 0.3},
    ]
    assert train.learning_curve(log) == [
        {"step": 0, "eval_loss": 9.1, "eval_letters_accuracy": 0.25},
        {"step": 5, "eval_loss": 2.0, "eval_letters_accuracy": 0.3},
    ]


def test_dry_run_resolves_config_data_and_memory_without_a_model():
    cfg = train.config_for("zephyr-cosmosqa", "rtx3090")
    plan = train.dry_run(cfg, "runs/z", "data/samples/cosmos_qa_ptbr/train.jsonl")
    assert plan["rows"]["validation"] > 0 and plan["memory_estimate_gb"]["fits"]
    assert plan["command"].startswith("python -m lib.train --preset zephyr-cosmosqa --hardware rtx3090")


def test_held_out_evaluation_in_one_pass_equals_the_trainers_eval_loss_and_letters(trainers):
    """lib.evaluate.held_out_loss_and_letters: the trainer's eval loss and lib.evaluate's letters answers, one forward."""
    from lib import evaluate

    trainer, tokenizer, rows = trainers["zephyr-cosmosqa"]
    rows = list(rows)
    trainer.eval_dataset = trainer.train_dataset  # the same four rendered conversations
    expected = trainer.evaluate()["eval_loss"]
    got = evaluate.held_out_loss_and_letters(trainer.model.eval(), tokenizer, rows, batch_size=3)
    assert abs(got["eval_loss"] - expected) < 1e-3
    letters = evaluate.evaluate_mc(trainer.model, tokenizer, rows, "letters")
    assert got["eval_letters_accuracy"] == round(sum(p["correct"] for p in letters) / len(rows), 4)
    assert got["eval_letters_n"] == len(rows)


@pytest.mark.slow
def test_one_held_out_evaluation_feeds_the_curve_best_model_tracking_and_early_stopping(tmp_path):
    """With held-out rows the trainer's own evaluation is the one-pass loss + letters measurement: it reaches the log
    history at step 0 and every eval step, and the best-model tracking that early stopping reads."""
    cfg = train.config_for(
        "zephyr-cosmosqa",
        "smoke",
        model="embedded-small",
        per_device_batch=2,
        batch_size=2,
        max_steps=3,
        eval_steps=1,
        save_steps=1,
        early_stopping_patience=5,
    )
    rows = synthetic.generate(seed=3, sizes={"train": 6, "validation": 3})
    tokenizer = models.load_tokenizer(cfg.model)
    train.prepare_pad_token(tokenizer)
    examples = {s: train.training_examples(rows[s], cfg, tokenizer) for s in ("train", "validation")}
    trainer = train.build_trainer(
        cfg, examples["train"], examples["validation"], tmp_path, tokenizer=tokenizer, held_out=list(rows["validation"])
    )
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [0, 1, 2, 3]
    assert all(e["eval_letters_n"] == 3 and 0 <= e["eval_letters_accuracy"] <= 1 for e in evals)
    assert trainer.state.best_metric == min(e["eval_loss"] for e in evals[1:])
    stopper = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "EarlyStoppingCallback")
    assert stopper.early_stopping_patience_counter <= 2


@pytest.mark.slow
def test_a_bf16_step_on_cpu_keeps_lora_and_the_optimizer_in_fp32_and_tracks_the_fp32_loss(tmp_path):
    """bf16 autocast where the CPU has native bf16 (`training_dtype("auto")`): 4-bit layers and the frozen LM head
    compute in bf16, LoRA master weights stay fp32, and the first steps' losses stay near the fp32 run's."""
    import bitsandbytes as bnb
    import torch

    from lib import sft

    assert sft.training_dtype("fp32") == "fp32" and sft.training_dtype("bf16") == "bf16"
    assert sft.training_dtype("auto") == ("bf16" if sft.cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="dtype must be one of"):
        sft.training_dtype("fp8")
    losses = {}
    for dtype in ("fp32", "bf16"):
        cfg = train.config_for(
            "sabia-canarim",
            "smoke",
            model="embedded-small",
            max_steps=2,
            per_device_batch=4,
            batch_size=4,
            eval_steps=1000,
            save_steps=1000,
            dtype=dtype,
        )
        tokenizer = models.load_tokenizer(cfg.model)
        train.prepare_pad_token(tokenizer)
        rows = train.load_task_data(cfg)[0]["train"].select(range(8))
        trainer = train.build_trainer(
            cfg, train.training_examples(rows, cfg, tokenizer), None, tmp_path / dtype, tokenizer=tokenizer
        )
        assert trainer.args.bf16 == (dtype == "bf16")
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)
        layers = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert layers and {m.compute_dtype for m in layers} == {torch.bfloat16 if dtype == "bf16" else torch.float32}
        trainer.train()
        losses[dtype] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        assert all(torch.isfinite(torch.tensor(losses[dtype])))
    assert max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"])) < 0.05, losses
