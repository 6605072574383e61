""" "Will it fit?" measured: a few real QLoRA optimizer steps of a preset on random weights of its real architecture.

`python -m lib.fitcheck --preset zephyr-cosmosqa --hardware rtx3090` builds the preset's model from its published
shapes (`lib.models.ARCHITECTURES`) with random weights — nothing is downloaded —, loads it in 4-bit NF4 through the
project's own loader (`lib.models.load_model`), and trains it for `--steps` optimizer steps through the project's own
trainer (`lib.sft.build_trainer`: same collator, LoRA, optimizer, gradient checkpointing, precision) on the shipped
sample of the preset's task, every micro-batch padded to the preset's `max_length` (the worst case for memory). It
reports the peak GPU memory next to `lib.memory.memory_estimate`, seconds per optimizer step, real tokens/s, and
whether the run fits the hardware's budget and the GPU it ran on. `--all` runs every preset x GPU hardware, each in
its own process. Rows go to `results/<profile>/bench/fitcheck.json` (profile `full` on a GPU, `smoke` with `--tiny`).

`--tiny` runs the same code with tiny shapes (2 layers, hidden 64, the real vocabulary) on CPU in seconds: that is
what the test suite runs (no GPU there). On CPU there is no GPU peak to report (those fields are null).

What is and is not real — random weights, the real tokenizer (or its offline twin), batches padded to `max_length`
(the worst case), `tokens_per_s` counting only real tokens — is set out in docs/fitcheck.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lib import data, memory, models, paths, probes, train

FIELDS = (
    "preset",
    "hardware",
    "gpu",
    "ok",
    "error",
    "peak_allocated_gb",
    "peak_reserved_gb",
    "estimate_gb",
    "s_per_step",
    "tokens_per_s",
)
GPU_HARDWARE = tuple(h for h in train.HARDWARE if h != "smoke")
GB = 1e9  # the estimator's unit (lib.memory.estimate_memory_gb); hardware budgets are compared in it too
FALLBACK_TOKENIZERS = ("embedded-small", "embedded")  # SmolLM2 (49 152 ids) is quicker to convert than Gemma
# --tiny: the real model type, vocabulary and layer-width ratios, tiny widths (`lib.models.architecture`); a couple
# of micro-batches per step
architecture, config_object, random_model_folder = models.architecture, models.config_object, models.random_model_folder
TINY_BATCH = dict(per_device_batch=2, batch_size=4)


# ---------------------------------------------------------------- what runs


def fit_source(task: str) -> Path:
    """The shipped sample of a task: Canarim for Alpaca-PT, Cosmos QA PT for the chat presets."""
    if task == "canarim":
        return paths.SAMPLES / "canarim.jsonl"
    folder = paths.SAMPLES / "cosmos_qa_ptbr" / "train.jsonl"
    return folder if folder.exists() else paths.SAMPLES / "cosmos_qa_ptbr.jsonl"


def fit_config(
    preset: str, hardware: str, steps: int, tiny: bool = False, model: str | None = None, **overrides
) -> train.TrainConfig:
    """The preset on its hardware, `steps` optimizer steps, no evaluation and no checkpoint (`model`: the folder)."""
    if hardware not in GPU_HARDWARE:
        raise ValueError(f"the fit check is for GPU hardware {list(GPU_HARDWARE)}, not {hardware!r}")
    extra = dict(TINY_BATCH) if tiny else {}
    extra.update({k: v for k, v in overrides.items() if v is not None})
    return train.config_for(preset, hardware, model=model, max_steps=steps, save_steps=10**9, eval_steps=10**9, **extra)


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def twin_of(model: str) -> str | None:
    """The preset whose tiny twin carries `model`'s real tokenizer offline (lib.models), if any."""
    return next((name for name, preset in models.PRESETS.items() if preset.twin_of == model), None)


def load_fit_tokenizer(model: str, choice: str = "auto"):
    """(tokenizer, its name): `auto` = the model's real tokenizer when it loads (cache or Hub: a few MB), else an
    embedded model's (whose ids may exceed the model's vocabulary: `RemapTokenIds` takes them modulo)."""
    if choice != "auto":
        return models.load_tokenizer(choice), choice
    try:
        return models.load_tokenizer(model), model
    except (models.ModelUnavailableError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    twin = twin_of(model)
    for fallback in ((twin,) if twin else ()) + FALLBACK_TOKENIZERS:
        try:
            tokenizer = models.load_tokenizer(fallback)
        except (models.ModelUnavailableError, OSError, ValueError):
            continue
        print(
            f"[fitcheck] the tokenizer of {model} is unavailable ({reason}); using {fallback}'s"
            + ("" if fallback == twin else ", token ids modulo the model's vocabulary"),
            flush=True,
        )
        return tokenizer, fallback
    raise models.ModelUnavailableError(f"no tokenizer: {model} ({reason}) nor any of {FALLBACK_TOKENIZERS}")


def fit_examples(cfg: train.TrainConfig, tokenizer, n: int, source: str | Path | None = None):
    """`n` training examples of the task's shipped sample, rendered by `lib.train` (cycled when the sample is short)."""
    import datasets

    source = Path(source or fit_source(cfg.task))
    raw, _ = data.load(str(source), "canarim" if cfg.task == "canarim" else "cosmos_qa_pt", splits=["train"])
    examples, report = train.drop_overlong(
        train.training_examples(raw["train"], cfg, tokenizer, augment=True), tokenizer, cfg.max_length
    )
    if len(examples) == 0:
        raise ValueError(f"no example of {source} fits in max_length={cfg.max_length}")
    rows = [examples[i % len(examples)] for i in range(n)]
    return datasets.Dataset.from_list(rows), report


class RemapTokenIds:
    """Wraps the trainer's collator: token ids modulo the model's vocabulary, and a record of every batch's shape.

    Only needed when the tokenizer is not the model's (the fit check measures memory and speed, not language); a
    no-op otherwise. Labels keep their -100 (ignored) positions.
    """

    def __init__(self, collator, vocab_size: int):
        self.collator, self.vocab_size = collator, vocab_size
        self.remapped = 0
        self.batches: list[tuple[int, int]] = []  # (real tokens, padded positions) per collated batch, in order

    def __call__(self, examples):
        batch = self.collator(examples)
        ids = batch["input_ids"]
        self.remapped += int((ids >= self.vocab_size).sum())
        batch["input_ids"] = ids % self.vocab_size
        if "labels" in batch:
            labels = batch["labels"]
            batch["labels"] = torch.where(labels == -100, labels, labels % self.vocab_size)
        mask = batch.get("attention_mask")
        real = int(mask.sum()) if mask is not None else int(ids.numel())
        self.batches.append((real, int(ids.numel())))
        return batch


def step_timer():
    """A TrainerCallback recording the wall clock at the start of training and at the end of each optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def _mark(self):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = []
            self._mark()

        def on_step_end(self, args, state, control, **kwargs):
            self._mark()

    return StepTimer()


def speed(marks: list[float], batches: list[tuple[int, int]], grad_accum: int) -> dict:
    """Seconds per optimizer step and tokens/s, leaving out the first step (kernel selection, optimizer state)."""
    durations = [b - a for a, b in zip(marks, marks[1:])]
    if not durations:
        return {"s_per_step": None, "tokens_per_s": None, "padded_tokens_per_s": None, "first_step_s": None}
    timed = list(range(1, len(durations))) or [0]
    seconds = sum(durations[i] for i in timed)
    steps_batches = [batches[i * grad_accum : (i + 1) * grad_accum] for i in timed]
    real = sum(r for step in steps_batches for r, _ in step)
    padded = sum(p for step in steps_batches for _, p in step)
    return {
        "s_per_step": round(seconds / len(timed), 3),
        "tokens_per_s": round(real / seconds, 1),
        "padded_tokens_per_s": round(padded / seconds, 1),
        "first_step_s": round(durations[0], 3),
        "timed_steps": len(timed) if len(durations) > 1 else 0,
    }


def quantized_layers(model) -> int:
    """How many 4-bit NF4 layers the trained model has (0 would mean the QLoRA path did not run)."""
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) and m.weight.quant_state.quant_type == "nf4" for m in model.modules())


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _gb(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / GB, 2)


# ---------------------------------------------------------------- one check


def plan(preset: str, hardware: str, steps: int = 3, tiny: bool = False, source: str | Path | None = None) -> dict:
    """What a fit check of `preset` on `hardware` runs — shapes, batch, optimizer, data, estimate — without running it."""
    from transformers import AutoModelForCausalLM

    real_cfg = train.config_for(preset, hardware)
    spec = architecture(real_cfg.model, tiny)
    cfg = fit_config(preset, hardware, steps, tiny)
    guess = memory.memory_estimate(real_cfg) if not tiny else memory.estimate_for(cfg, spec)
    with torch.device("meta"):
        n_params = memory.count_parameters(AutoModelForCausalLM.from_config(config_object(spec)))[1]
    return {
        "preset": preset,
        "hardware": hardware,
        "gpu": gpu_name() + (" (tiny)" if tiny else ""),
        "tiny": tiny,
        "model": real_cfg.model,
        "architecture": spec,
        "steps": steps,
        "per_device_batch": cfg.per_device_batch,
        "grad_accum": cfg.grad_accum,
        "max_length": cfg.max_length,
        "optimizer": cfg.optimizer,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "budget_gb": cfg.memory_gb,
        "estimate_gb": guess["total"],
        "estimate": guess,
        "data": paths.portable(source or fit_source(cfg.task)),
        "examples": steps * cfg.per_device_batch * cfg.grad_accum,
        "random_weights_on_disk_gb": _gb(n_params * (4 if tiny and not torch.cuda.is_available() else 2)),
    }


def check(
    preset: str,
    hardware: str,
    steps: int = 3,
    tiny: bool = False,
    workdir: str | Path | None = None,
    tokenizer: str = "auto",
    source: str | Path | None = None,
) -> dict:
    """Train `preset` on `hardware`'s settings for `steps` optimizer steps on random weights; one result row.

    Never raises for a failed run (an out-of-memory error is a result): `ok` is False and `error` says why.
    """
    if not tiny and not torch.cuda.is_available():
        raise RuntimeError(
            "no CUDA GPU here: the fit check of the real 7B shapes needs one; `--tiny` runs the same "
            "code with tiny shapes on CPU (what the tests run)"
        )
    planned = plan(preset, hardware, steps, tiny, source)
    real_cfg = train.config_for(preset, hardware)
    spec = planned["architecture"]
    cfg = fit_config(preset, hardware, steps, tiny)
    row = {
        "preset": preset,
        "hardware": hardware,
        "gpu": planned["gpu"],
        "ok": False,
        "error": None,
        "peak_allocated_gb": None,
        "peak_reserved_gb": None,
        "estimate_gb": planned["estimate_gb"],
        "s_per_step": None,
        "tokens_per_s": None,
        **planned,
    }
    own_workdir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fitcheck-"))
    trainer = None
    try:
        # --tiny (CPU, tests): the twin's offline copy of the real tokenizer, without asking the Hub first
        tok, tok_name = load_fit_tokenizer(
            (twin_of(real_cfg.model) or real_cfg.model) if tiny else real_cfg.model, tokenizer
        )
        train.prepare_pad_token(tok)
        examples, lengths = fit_examples(cfg, tok, steps * cfg.per_device_batch * cfg.grad_accum, source)
        row.update(tokenizer=tok_name, examples_over_max_length=lengths["over_max_length"])
        folder = random_model_folder(spec, workdir)
        cfg = fit_config(preset, hardware, steps, tiny, model=str(folder))
        release_memory()
        if torch.cuda.is_available():
            torch.cuda.init()  # the model folder may have been built by an earlier process: no context yet
            torch.cuda.reset_peak_memory_stats()  # the peak covers loading (4-bit quantization) and training
        start = time.perf_counter()
        trainer = train.build_trainer(cfg, examples, None, workdir / "run", pad_to_max=True, tokenizer=tok)
        row["load_s"] = round(time.perf_counter() - start, 1)
        if torch.cuda.is_available():
            row["load_peak_allocated_gb"] = _gb(torch.cuda.max_memory_allocated())
        remap = RemapTokenIds(trainer.data_collator, spec["vocab_size"])
        trainer.data_collator = remap
        timer = step_timer()
        trainer.add_callback(timer)
        trainer.train()
        row.update(speed(timer.marks, remap.batches, cfg.grad_accum))
        row["token_ids"] = (
            f"modulo {spec['vocab_size']} ({remap.remapped} ids remapped)" if remap.remapped else "as tokenized"
        )
        row["trainable_parameters"] = memory.count_parameters(trainer.model)[0]
        row["quantized_layers"] = quantized_layers(trainer.model)
        row["optimizer_steps"] = trainer.state.global_step
        row["positions_per_micro_batch"] = sorted({padded for _, padded in remap.batches})
        row["ok"] = True
    except Exception as error:  # noqa: BLE001 - an OOM (or any failure) is the answer, recorded in the row
        row["error"] = (
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}"
        )
    finally:
        row.update(memory_row(row))
        del trainer
        release_memory()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return row


def memory_row(row: dict) -> dict:
    """Peaks, what lives on the GPU outside PyTorch's allocator, and the two fit verdicts."""
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2)}
    if not torch.cuda.is_available():
        return {**out, "fits_budget": None, "fits_gpu": None}
    free, total = torch.cuda.mem_get_info()
    outside = max(0, total - free - torch.cuda.memory_reserved())  # CUDA context, library workspaces, other processes
    peak_reserved = torch.cuda.max_memory_reserved()
    device_peak = peak_reserved + outside
    out.update(
        peak_allocated_gb=_gb(torch.cuda.max_memory_allocated()),
        peak_reserved_gb=_gb(peak_reserved),
        outside_allocator_gb=_gb(outside),
        peak_device_gb=_gb(device_peak),
        gpu_memory_gb=_gb(total),
    )
    budget = row["budget_gb"] * GB
    if row["ok"]:
        out["fits_gpu"] = True
        out["fits_budget"] = device_peak <= budget
    else:
        oom = "out of memory" in (row["error"] or "").lower() or (row["error"] or "").startswith("OutOfMemoryError")
        out["fits_gpu"] = False if oom else None
        out["fits_budget"] = False if oom and total <= budget else None
    if row["estimate_gb"] and not row.get("tiny"):
        out["estimate_error"] = round((row["estimate_gb"] - device_peak / GB) / (device_peak / GB), 3)
    return out


# ---------------------------------------------------------------- all presets, results file


def combos(presets=None, hardware=None) -> list[tuple[str, str]]:
    """Every preset x GPU hardware, ordered by model (each random model is built once and deleted after use)."""
    pairs = [(p, h) for p in (presets or sorted(train.PRESETS)) for h in (hardware or GPU_HARDWARE)]
    return sorted(pairs, key=lambda ph: (train.config_for(*ph).model, ph))


def check_all(
    steps: int = 3, tiny: bool = False, tokenizer: str = "auto", presets=None, hardware=None, timeout: float = 1800
) -> list[dict]:
    """Each combination in its own process (fresh allocator, peak and CUDA context), sharing one model folder."""
    rows = []
    pairs = combos(presets, hardware)
    with tempfile.TemporaryDirectory(prefix="fitcheck-") as tmp:
        for i, (preset, hw) in enumerate(pairs):
            out = Path(tmp) / f"row-{i}.json"
            command = [
                sys.executable,
                "-m",
                "lib.fitcheck",
                "--preset",
                preset,
                "--hardware",
                hw,
                "--steps",
                str(steps),
                "--tokenizer",
                tokenizer,
                "--workdir",
                tmp,
                "--row-out",
                str(out),
            ]
            command += ["--tiny"] if tiny else []
            print(f"[fitcheck] {preset} / {hw} ...", flush=True)
            try:
                done = subprocess.run(command, cwd=paths.ROOT, timeout=timeout, capture_output=True, text=True)
                error = None if out.exists() else f"process exited {done.returncode}: {done.stderr.strip()[-300:]}"
            except subprocess.TimeoutExpired:
                error = f"timed out after {timeout:.0f} s"
            # (the parent never touches CUDA: its context would count against the next child's GPU memory)
            rows.append(
                json.loads(out.read_text())
                if out.exists()
                else {
                    "preset": preset,
                    "hardware": hw,
                    "gpu": "unknown (the run's process failed)",
                    "ok": False,
                    "error": error,
                    **{k: None for k in FIELDS[5:]},
                    "tiny": tiny,
                }
            )
            print(summary_line(rows[-1]), flush=True)
            model = train.config_for(preset, hw).model
            if all(train.config_for(*ph).model != model for ph in pairs[i + 1 :]):  # last use: free the disk
                for folder in Path(tmp).glob("random-*"):
                    shutil.rmtree(folder, ignore_errors=True)
    return rows


def write_rows(rows: list[dict], path: str | Path, steps: int) -> Path:
    """Merge `rows` into the results file: a row replaces the one with the same preset, hardware and GPU."""
    path = Path(path)
    old = json.loads(path.read_text(encoding="utf-8")).get("rows", []) if path.exists() else []
    key = lambda r: (r["preset"], r["hardware"], r["gpu"])  # noqa: E731
    new_keys = {key(r) for r in rows}
    merged = sorted([r for r in old if key(r) not in new_keys] + rows, key=key)
    return paths.write_json(
        {
            "name": "fitcheck",
            "fields": list(FIELDS),
            "steps": steps,
            "rows": merged,
            "versions": train.versions(),
            "notes": NOTES,
        },
        path,
    )


NOTES = (
    "Random weights of the real architecture in 4-bit NF4 through lib.models.load_model, trained by "
    "lib.sft.build_trainer for `steps` optimizer steps, every micro-batch padded to max_length. GB = 1e9 "
    "bytes. peak_reserved_gb + outside_allocator_gb (CUDA context, workspaces) = peak_device_gb, compared with "
    "budget_gb (fits_budget) and with estimate_gb (estimate_error). tokens_per_s counts real (non-padding) "
    "tokens, leaving out the first step. Rows with gpu '... (tiny)' ran tiny shapes on CPU: mechanics only."
)


def summary_line(row: dict) -> str:
    head = f"  {row['preset']:<20} {row['hardware']:<11}"
    if not row["ok"]:
        return f"{head} FAILED on {row['gpu']}: {row['error']}"
    speed_part = f"{row['s_per_step']} s/step, {row['tokens_per_s']} real tokens/s on {row['gpu']}"
    if row.get("peak_device_gb") is None:  # CPU: no GPU peak to compare
        return (
            f"{head} ran ({row['optimizer_steps']} steps; process peak RSS {row.get('peak_rss_gb')} GB, no GPU "
            f"peak on CPU; estimate for these shapes {row['estimate_gb']} GB); {speed_part}"
        )
    verdict = "fits" if row["fits_budget"] else "does NOT fit"
    return (
        f"{head} peak {row['peak_device_gb']} GB (allocated {row['peak_allocated_gb']}, reserved "
        f"{row['peak_reserved_gb']}, outside the allocator {row['outside_allocator_gb']}) vs estimate "
        f"{row['estimate_gb']} GB -> {verdict} the {row['budget_gb']} GB budget; {speed_part}"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="Will it fit? A few real QLoRA steps on random 7B-shaped weights.")
    parser.add_argument("--preset", choices=sorted(train.PRESETS))
    parser.add_argument("--hardware", choices=GPU_HARDWARE)
    parser.add_argument("--all", action="store_true", help="every preset x GPU hardware, one process each")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (the first one is not timed)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: the code path, in seconds")
    parser.add_argument(
        "--tokenizer",
        default="auto",
        help="auto (the model's own: Hub, cache or its twin's offline copy) or a model name",
    )
    parser.add_argument("--profile", help="results/<profile>/bench/fitcheck.json (default: full; smoke with --tiny)")
    parser.add_argument("--out", help="results file (overrides --profile)")
    parser.add_argument("--workdir", help="where the random model folder is written (kept if given)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run (shapes, batch, optimizer, data, estimate); build and train nothing",
    )
    parser.add_argument("--row-out", help=argparse.SUPPRESS)  # --all: one child process writes its row here
    parser.add_argument(
        "--probe-activations",
        action="store_true",
        help="count the activation bytes autograd keeps per token per layer (CPU, real widths unless "
        "--tiny) -> results/<profile>/bench/fitcheck_activations.json",
    )
    parser.add_argument(
        "--environment",
        action="store_true",
        help="CUDA, compute capability, bf16, bitsandbytes CUDA kernels -> --out (JSON); nothing else",
    )
    args = parser.parse_args(argv)
    if args.environment:
        env = probes.environment()
        print(json.dumps(env, indent=2, default=str))
        if args.out:
            paths.write_json(env, args.out)
        return [env]
    if args.probe_activations:
        result = probes.probe_all(args.tiny)
        out = (
            Path(args.out)
            if args.out
            else (paths.RESULTS / (args.profile or "smoke") / "bench" / "fitcheck_activations.json")
        )
        print(f"[fitcheck] -> {paths.relative(paths.write_json(result, out))}")
        return result["rows"]
    if not args.all and not (args.preset and args.hardware):
        parser.error("give --preset and --hardware, or --all")
    if args.dry_run:
        pairs = (
            combos([args.preset] if args.preset else None, [args.hardware] if args.hardware else None)
            if args.all
            else [(args.preset, args.hardware)]
        )
        plans = [plan(p, h, args.steps, args.tiny) for p, h in pairs]
        print(json.dumps(plans, indent=2, default=str))
        return plans
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: the real 7B shapes need one; --tiny runs the same code with tiny shapes on CPU")
    if args.all:
        rows = check_all(
            args.steps,
            args.tiny,
            args.tokenizer,
            presets=[args.preset] if args.preset else None,
            hardware=[args.hardware] if args.hardware else None,
        )
    else:
        rows = [check(args.preset, args.hardware, args.steps, args.tiny, args.workdir, args.tokenizer)]
        if args.row_out:
            paths.write_json(rows[0], args.row_out)
            return rows
        print(summary_line(rows[0]))
    out = (
        Path(args.out)
        if args.out
        else (paths.RESULTS / (args.profile or ("smoke" if args.tiny else "full")) / "bench" / "fitcheck.json")
    )
    print(f"[fitcheck] -> {paths.relative(write_rows(rows, out, args.steps))}")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
