"""QLoRA fine-tuning with TRL `SFTTrainer`: loss on the completion only, EOS kept in the labels, resumable.

Presets (`PRESETS`, below) are the one place that says how each model is trained; `HARDWARE` adapts a preset to a
machine (`colab-a100`, `rtx3090`, `smoke` = the embedded model on CPU). `config_for(preset, hardware)` merges them.
CLI: `python -m lib.train --preset zephyr-cosmosqa --hardware smoke --output-dir data/adapters/x` (rerun the same
command after a crash: it resumes from the last checkpoint in `output_dir`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch

from lib import data, models, prompts
from lib.hub import hub_last_checkpoint, hub_token, last_checkpoint, push_adapter, upload_plan
from lib.memory import count_parameters, memory_estimate
from lib.sft import build_trainer, cpu_substitutions, default_report_to, prepare_pad_token, training_dtype

# ---------------------------------------------------------------- presets (read side by side)

PRESETS: dict[str, dict] = {
    # Sabiá-7B on Canarim, Alpaca-PT. LoRA r=32 on q,k,v of LLaMA-7B = 25 165 824 trainable parameters, the count
    # the prior work reported (its earlier r=16 config gave 12 582 912).
    "sabia-canarim": dict(
        model="sabia-7b",
        task="canarim",
        data="dominguesm/Canarim-Instruct-PTBR-Dataset",
        train_rows=27_000,
        validation_rows=1_500,
        epochs=3,
        max_steps=-1,
        batch_size=8,
        learning_rate=2e-4,
        scheduler="cosine",
        warmup_steps=0,
        optimizer="paged_adamw_32bit",
        lora_r=32,
        lora_alpha=32,
        lora_dropout=0.05,
        lora_targets=("q_proj", "k_proj", "v_proj"),
        max_length=1024,
    ),
    # Zephyr-7B-beta on Cosmos QA PT, chat prompts whose target is "Alternativa X". Steps are chosen on 1 500
    # questions held out of *train*: the validation split is what notebook 06 reports, and nothing else reads it.
    "zephyr-cosmosqa": dict(
        model="zephyr-7b-beta",
        task="cosmos",
        data="heloisy/cosmos_qa_ptbr",
        train_rows=None,
        validation_rows=1_500,
        validation_from="train",
        epochs=2,
        max_steps=-1,
        batch_size=32,
        learning_rate=4e-5,
        scheduler="cosine",
        warmup_steps=100,
        optimizer="paged_adamw_8bit",
        lora_r=16,
        lora_alpha=16,
        lora_dropout=0.05,
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"),
        max_length=512,
    ),
    # The prior work's v2: r=32, 3 epochs.
    "zephyr-cosmosqa-v2": dict(base="zephyr-cosmosqa", lora_r=32, lora_alpha=32, epochs=3),
}

HARDWARE: dict[str, dict] = {
    # A100 40 GB: bf16, no checkpointing, micro-batch 4 with accumulation (the whole batch in one step would need
    # ~160 GB of activations; see memory_estimate).
    "colab-a100": dict(per_device_batch=4, gradient_checkpointing=False, optimizer=None, memory_gb=40),
    # RTX 3090 24 GB: smaller micro-batches with gradient accumulation (same effective batch), checkpointing,
    # paged 8-bit AdamW.
    "rtx3090": dict(per_device_batch=4, gradient_checkpointing=True, optimizer="paged_adamw_8bit", memory_gb=24),
    # CPU smoke run on the embedded model: fp32, minutes; data = shipped sample / SYNTHETIC set. A 270M model and a
    # few hundred steps need a higher learning rate than a 7B run.
    "smoke": dict(
        per_device_batch=8,
        gradient_checkpointing=False,
        optimizer="adamw_torch",
        memory_gb=24,
        model="embedded",
        epochs=1,
        max_steps=-1,
        warmup_steps=10,
        learning_rate=1e-3,
        batch_size=8,
        train_rows=None,
        max_length=384,
        eval_steps=25,
        save_steps=50,
    ),
}

# Smoke data per task: (source, validation rows, where validation comes from). Canarim's 16 held-out rows are the
# ones notebooks 02 and 07 hold out too (same seeded split). Cosmos trains on the shipped natural PT corpus and
# chooses steps on a seeded part of its *train* split: its `validation` split stays unseen until notebook 06.
SMOKE_DATA = {
    "canarim": ("data/samples/canarim.jsonl", 16, "train"),
    "cosmos": ("data/samples/cosmos_qa_ptbr", 60, "train"),
}


@dataclass
class TrainConfig:
    preset: str
    hardware: str
    model: str
    task: str  # "canarim" (Alpaca-PT) or "cosmos" (chat, target "Alternativa X")
    data: str
    train_rows: int | None
    validation_rows: int | None
    epochs: float
    max_steps: int
    batch_size: int  # effective batch = per_device_batch * grad_accum
    per_device_batch: int
    learning_rate: float
    scheduler: str
    warmup_steps: int
    optimizer: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_targets: tuple[str, ...]
    max_length: int
    gradient_checkpointing: bool
    memory_gb: float
    eval_steps: int = 200
    save_steps: int = 200
    logging_steps: int = 1
    seed: int = 42
    early_stopping_patience: int | None = None
    option_rotations: int = 1  # cosmos: each question seen with its options rotated this many ways (1 = as given)
    # "validation": the source's own validation split (a seeded hold-out of train when it has none);
    # "train": always a seeded hold-out of train, so the source's validation split stays unseen (smoke runs)
    validation_from: str = "validation"
    # compute dtype of a training step (lib.sft.training_dtype): "auto" = bf16 on a GPU or a CPU with native bf16
    # (AVX512-BF16 / AMX), fp32 on other CPUs; "bf16" / "fp32" force it on a CPU
    dtype: str = "auto"

    @property
    def grad_accum(self) -> int:
        return max(1, self.batch_size // self.per_device_batch)


def _preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    spec = dict(PRESETS[name])
    base = spec.pop("base", None)
    return {**_preset(base), **spec} if base else spec


def config_for(preset: str, hardware: str = "colab-a100", **overrides) -> TrainConfig:
    if hardware not in HARDWARE:
        raise ValueError(f"unknown hardware {hardware!r}; choose from {sorted(HARDWARE)}")
    spec = _preset(preset)
    hw = {k: v for k, v in HARDWARE[hardware].items() if v is not None}
    if hardware == "smoke":
        spec["data"], spec["validation_rows"], spec["validation_from"] = SMOKE_DATA[spec["task"]]
    spec.update(hw)
    spec.setdefault("per_device_batch", spec["batch_size"])
    spec.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(preset=preset, hardware=hardware, **spec)


# ---------------------------------------------------------------- data


def load_task_data(cfg: TrainConfig, source: str | None = None) -> tuple[datasets.DatasetDict, data.ValidationReport]:
    """Validated train/validation splits for the preset's task, by the one rule of `lib.data.train_validation`."""
    from lib import paths

    source = paths.resolve_source(source or cfg.data)
    schema = "canarim" if cfg.task == "canarim" else "cosmos_qa_pt"
    # Canarim ships only `train`: its hold-out is always carved from it, sized by the preset.
    splits, report = data.train_validation(
        source, schema, cfg.validation_rows, cfg.seed, "train" if cfg.task == "canarim" else cfg.validation_from
    )
    for split, n in (("train", cfg.train_rows), ("validation", None if cfg.task == "canarim" else cfg.validation_rows)):
        if n and n < len(splits[split]):
            splits[split] = splits[split].select(range(n))
    return splits, report


def rotated_options(row: dict, rotations: int) -> list[dict]:
    """The question `rotations` times, its options shifted one letter further each time (label follows its option).

    The story and question stay identical while the right letter moves, so the only thing that explains the label is
    which option is right: the letter-binding signal a small model otherwise needs many more examples to pick up. A
    "none of the above" option keeps its slot (it refers to the options above it).
    """
    movable = [k for k in data.LETTERS if not data.is_none_of_the_above(row[k])]
    out = []
    for shift in range(min(rotations, len(movable))):
        new = dict(row)
        for i, k in enumerate(movable):
            new[movable[(i + shift) % len(movable)]] = row[k]
        if row["Label"] in movable:
            new["Label"] = movable[(movable.index(row["Label"]) + shift) % len(movable)]
        out.append(new)
    return out


def training_examples(ds: datasets.Dataset, cfg: TrainConfig, tokenizer, augment: bool = False) -> datasets.Dataset:
    """prompt/completion rows, rendered by the same `lib.prompts` functions inference uses (`augment`: the
    preset's option rotations, for the training split only)."""
    if cfg.task == "canarim":
        rows = [prompts.format_alpaca_pt(r, tokenizer) for r in ds]
        return datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    rows = [rotated for r in ds for rotated in rotated_options(r, cfg.option_rotations if augment else 1)]
    return datasets.Dataset.from_list([prompts.cosmos_training_example(r) for r in rows])


def token_length(example: dict, tokenizer) -> int:
    if isinstance(example["prompt"], list):
        # transformers 5 returns a BatchEncoding here (len() would count its keys, not the tokens)
        return len(
            tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
    return len(tokenizer(example["prompt"] + example["completion"])["input_ids"])


def drop_overlong(ds: datasets.Dataset, tokenizer, max_length: int) -> tuple[datasets.Dataset, dict]:
    """Remove examples longer than max_length (truncation would cut the answer and its EOS) and report them."""
    lengths = [token_length(ex, tokenizer) for ex in ds]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    over = [n for n in lengths if n > max_length]
    report = {
        "examples": len(lengths),
        "over_max_length": len(over),
        "tokens_over": sum(n - max_length for n in over),
        "longest": max(lengths, default=0),
        "max_length": max_length,
        "kept": len(keep),
    }
    return ds.select(keep), report


def learning_curve(log_history: list[dict]) -> list[dict]:
    """One row per evaluation: step, eval loss and held-out letters accuracy (where measured), from the log."""
    points: dict[int, dict] = {}
    for entry in log_history:
        for key in ("eval_loss", "eval_letters_accuracy"):
            if key in entry:
                points.setdefault(entry["step"], {"step": entry["step"]})[key] = round(entry[key], 4)
    return [points[step] for step in sorted(points)]


def versions() -> dict:
    import peft
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "datasets": datasets.__version__,
    }


def dataset_hash(ds: datasets.Dataset) -> str:
    digest = hashlib.sha256()
    for row in ds:
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:16]


def train(
    cfg: TrainConfig,
    output_dir: str | Path,
    source: str | None = None,
    merge: bool = False,
    persist_dir: str | Path | None = None,
    report_to: str | None = None,
    push_to_hub: str | None = None,
    hub_checkpoints: bool = False,
    private: bool = True,
) -> dict:
    """Load + validate + render data, train (resuming from the last complete checkpoint), save the final adapter
    with its model card.

    `persist_dir` (e.g. a folder on Google Drive): checkpoints and TensorBoard logs are written there instead of
    `output_dir`, and the final adapter is mirrored there, so a rerun on a fresh runtime resumes. `push_to_hub`: a
    Hub repo id that receives the final adapter and its card (and, with `hub_checkpoints`, every checkpoint, which a
    rerun with nothing local resumes from).
    """
    from lib import hub, paths

    output_dir = Path(output_dir)
    checkpoints = Path(persist_dir) if persist_dir else output_dir
    if push_to_hub and not hub_token():  # fail before hours of training, not after
        raise RuntimeError("--push-to-hub needs HF_TOKEN in the environment or in Colab's secrets")
    splits, report = load_task_data(cfg, source)
    tokenizer = models.load_tokenizer(cfg.model)
    prepare_pad_token(tokenizer)
    train_ds, train_len = drop_overlong(
        training_examples(splits["train"], cfg, tokenizer, augment=True), tokenizer, cfg.max_length
    )
    eval_ds, eval_len = drop_overlong(
        training_examples(splits["validation"], cfg, tokenizer), tokenizer, cfg.max_length
    )
    held_out = list(splits["validation"]) if cfg.task == "cosmos" else None
    report_to = report_to or default_report_to()
    trainer = build_trainer(
        cfg,
        train_ds,
        eval_ds,
        checkpoints,
        tokenizer=tokenizer,
        held_out=held_out,
        report_to=report_to,
        hub_checkpoints=push_to_hub if hub_checkpoints else None,
    )
    substitutions = cpu_substitutions(cfg)
    for row in substitutions:
        print(
            f"[train] on CPU instead of {cfg.hardware}: {row['setting']}: {row['here']} (GPU: {row['gpu']})", flush=True
        )
    resume = last_checkpoint(checkpoints)
    if resume is None and hub_checkpoints and push_to_hub:
        resume = hub_last_checkpoint(push_to_hub, checkpoints)
    print(
        f"[train] {cfg.preset}/{cfg.hardware}: {len(train_ds)} train, {eval_len['kept']} validation examples; "
        f"trainable parameters {count_parameters(trainer.model)[0]:,}; checkpoints in {checkpoints}; "
        + (f"resuming from {resume}" if resume else "starting fresh"),
        flush=True,
    )
    trainer.args.eval_on_start &= resume is None  # the resumed step was evaluated before the interruption
    trainer.train(resume_from_checkpoint=resume)
    final = output_dir / "final_adapter"
    trainer.save_model(str(final))  # collective under FSDP: every process calls it, the main one writes
    runtime = next((e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e), None)
    summary = {
        "preset": cfg.preset,
        "hardware": cfg.hardware,
        "config": asdict(cfg),
        "model": cfg.model,
        "data": paths.portable(cfg.data if source is None else source),
        "split": "train",
        "seed": cfg.seed,
        "train_data_hash": dataset_hash(splits["train"]),
        "rows": {"train": len(splits["train"]), "validation": len(splits["validation"])},
        "rejected_rows": report.n_rejected,
        "truncation": {"train": train_len, "validation": eval_len},
        "trainable_parameters": count_parameters(trainer.model)[0],
        "resumed_from": paths.portable(resume, persist_dir=persist_dir, output_dir=output_dir),
        "global_step": trainer.state.global_step,
        "useful_token_fraction": trainer.data_collator.useful_fraction,
        "log_history": trainer.state.log_history,
        "world_size": trainer.args.world_size,
        "versions": versions(),
        "cpu_substitutions": substitutions,
        "dtype": training_dtype(cfg.dtype),
        "machine": paths.machine(),
        "train_runtime_s": runtime,
        "report_to": report_to,
        "checkpoints": paths.portable(checkpoints, persist_dir=persist_dir, output_dir=output_dir),
    }
    if trainer.is_world_process_zero():  # one writer when several processes train (lib.launch)
        name_base_portably(final, cfg.model)
        tokenizer.save_pretrained(str(final))
        (final / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        hub.write_model_card(final)
        if persist_dir:
            summary["persisted_adapter"] = paths.portable(
                paths.mirror(final, Path(persist_dir) / "final_adapter"), persist_dir=persist_dir
            )
        if push_to_hub:
            summary["pushed"] = push_adapter(final, push_to_hub, private=private)
            print(f"[train] final adapter pushed to {push_to_hub} ({'private' if private else 'public'})", flush=True)
        if merge:
            summary["merged"] = paths.portable(
                merge_adapter(cfg.model, final, output_dir / "merged"), output_dir=output_dir
            )
    return summary


def name_base_portably(adapter_dir: str | Path, model: str) -> None:
    """PEFT writes the base's local folder into `adapter_config.json`; write the preset name or Hub id instead, so a
    committed or shared adapter names no machine's paths (loading passes the base model itself and ignores it)."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = models.portable_name(model)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def merge_adapter(model: str, adapter: str | Path, out_dir: str | Path) -> Path:
    """Merge into the full-precision base (merging into a 4-bit base silently loses the adapter)."""
    from peft import PeftModel

    base = models.load_model(model, quantize_4bit=False)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    models.load_tokenizer(model).save_pretrained(str(out_dir))
    return Path(out_dir)


def dry_run(
    cfg: TrainConfig,
    output_dir: str | Path,
    source: str | None = None,
    persist_dir: str | None = None,
    push_to_hub: str | None = None,
    hub_checkpoints: bool = False,
    private: bool = True,
) -> dict:
    """What `train` would do, without loading a model: the resolved config, data counts, memory estimate, resume
    point, what would be uploaded, and the command (for runs that need a GPU, the network or hours)."""
    from lib import paths

    plan = {"config": asdict(cfg), "data": source or cfg.data}
    if Path(paths.resolve_source(source or cfg.data)).exists():
        splits, report = load_task_data(cfg, source)
        plan.update(
            {
                "rows": {k: len(v) for k, v in splits.items()},
                "rejected_rows": report.n_rejected,
                "warnings": report.warnings,
            }
        )
    else:  # a Hub dataset: a dry run needs no network
        plan["rows"] = "Hub dataset: fetched and split by the real run"
    plan.update(
        {
            "memory_estimate_gb": memory_estimate(cfg),
            "dtype": training_dtype(cfg.dtype),
            "checkpoints": str(persist_dir or output_dir),
            "resume_from": last_checkpoint(persist_dir or output_dir),
            "uploads": upload_plan(Path(output_dir) / "final_adapter", push_to_hub, private, hub_checkpoints)
            if push_to_hub
            else None,
            "command": f"python -m lib.train --preset {cfg.preset} --hardware {cfg.hardware} "
            f"--output-dir {output_dir}"
            + (f" --source {source}" if source else "")
            + (f" --persist-dir {persist_dir}" if persist_dir else "")
            + (f" --push-to-hub {push_to_hub}" if push_to_hub else ""),
        }
    )
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="QLoRA fine-tuning (resumes from the last checkpoint).")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--hardware", default="smoke", choices=sorted(HARDWARE))
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--source", help="override the preset's data source (Hub id, file or folder)")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--lora-r", type=int, help="LoRA rank (alpha follows it)")
    parser.add_argument("--option-rotations", type=int, help="cosmos: show each question with its options rotated")
    parser.add_argument("--save-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--train-rows", type=int)
    parser.add_argument("--validation-rows", type=int)
    parser.add_argument("--batch-size", type=int, help="effective batch (per-device batch x accumulation)")
    parser.add_argument("--per-device-batch", type=int)
    parser.add_argument("--model")
    parser.add_argument(
        "--dtype",
        choices=("auto", "bf16", "fp32"),
        help="compute dtype of a CPU training step; auto: bf16 where the CPU has native bf16, else fp32",
    )
    parser.add_argument(
        "--optimizer", help="override the hardware's optimizer (lib.launch passes adamw_torch for FSDP)"
    )
    parser.add_argument(
        "--persist-dir",
        help="checkpoints, TensorBoard logs and a copy of the final adapter go here "
        "(e.g. Google Drive): a rerun on a fresh runtime resumes from it",
    )
    parser.add_argument(
        "--report-to",
        choices=["tensorboard", "wandb", "none"],
        help="training logger (default: tensorboard when installed)",
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the final adapter and its card (HF_TOKEN)")
    parser.add_argument(
        "--hub-checkpoints",
        action="store_true",
        help="with --push-to-hub: also push every checkpoint, and resume from the Hub's last one",
    )
    parser.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (default private)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config, data counts, memory estimate, uploads and command; train nothing",
    )
    args = parser.parse_args(argv)
    if args.hub_checkpoints and not args.push_to_hub:
        parser.error("--hub-checkpoints needs --push-to-hub REPO_ID")
    cfg = config_for(
        args.preset,
        args.hardware,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        eval_steps=args.eval_steps,
        train_rows=args.train_rows,
        validation_rows=args.validation_rows,
        batch_size=args.batch_size,
        per_device_batch=args.per_device_batch,
        model=args.model,
        optimizer=args.optimizer,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        lora_r=args.lora_r,
        lora_alpha=args.lora_r,
        option_rotations=args.option_rotations,
        dtype=args.dtype,
    )
    hub = dict(push_to_hub=args.push_to_hub, hub_checkpoints=args.hub_checkpoints, private=not args.public)
    if args.dry_run:
        print(json.dumps(dry_run(cfg, args.output_dir, args.source, args.persist_dir, **hub), indent=2, default=str))
        return
    summary = train(cfg, args.output_dir, args.source, persist_dir=args.persist_dir, report_to=args.report_to, **hub)
    print(json.dumps({k: summary[k] for k in ("global_step", "resumed_from", "trainable_parameters")}))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
