"""The trainer under `lib.train`: TRL's SFTTrainer as the presets use it.

- Batches of similar lengths (little padding without packing), real vs padded tokens counted (`UsefulTokenCounter`).
- With held-out multiple-choice rows, the trainer's own evaluation is one forward pass per batch giving eval loss and
  `letters` accuracy (`lib.evaluate.held_out_loss_and_letters`): the learning curve, best-model tracking and early
  stopping all read it.
- The `SFTConfig` of a preset on its hardware (`sft_config`), and what a CPU run does instead of the GPU settings
  (`cpu_substitutions`): fp32 LoRA weights, the 4-bit layers on their one differentiable CPU kernel path, TRL's LM
  head projecting only supervised positions.
- Checkpoints marked complete once all their files are written (`lib.hub.checkpoint_marker`).
`cfg` arguments are `lib.train.TrainConfig`s.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lib import models
from lib.hub import checkpoint_marker, hub_token
from lib.memory import lora_config


def prepare_pad_token(tokenizer) -> str:
    """A pad token distinct from EOS, so padding can never hide the EOS the model must learn to emit."""
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return tokenizer.pad_token
    for candidate in (tokenizer.unk_token, "<|endoftext|>", "<pad>"):
        if candidate and candidate != tokenizer.eos_token and candidate in tokenizer.get_vocab():
            tokenizer.pad_token = candidate
            return candidate
    raise ValueError("no token other than EOS can pad; add a <pad> token to the tokenizer")


class UsefulTokenCounter:
    """Wraps a collator and counts real vs padded tokens in the batches it builds."""

    def __init__(self, collator):
        self.collator, self.real, self.total = collator, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("attention_mask")
        if mask is not None:
            self.real += int(mask.sum())
            self.total += int(mask.numel())
        else:  # padding-free batches carry no padding
            n = int(batch["input_ids"].numel())
            self.real, self.total = self.real + n, self.total + n
        return batch

    @property
    def useful_fraction(self) -> float | None:
        return self.real / self.total if self.total else None  # no batch collated in this run (e.g. resumed at its end)


def _length_grouped_trainer_class():
    """SFTTrainer whose `group_by_length` sorts within mega-batches of 50 batches even on small datasets.

    transformers shrinks the mega-batch to a quarter of the data when the dataset is small, which leaves a lot of
    padding in CPU smoke runs; on large datasets the two behave the same.
    """
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
    from trl import SFTTrainer

    class WideLengthGroupedSampler(LengthGroupedSampler):
        def __iter__(self):
            return iter(
                get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=50, generator=self.generator)
            )

    class LengthGroupedSFTTrainer(SFTTrainer):
        held_out: tuple[list[dict], int] | None = None  # (multiple-choice rows, batch size): see `evaluate`

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            """With held-out multiple-choice rows: eval loss and `letters` accuracy from one forward pass per batch
            (`lib.evaluate.held_out_loss_and_letters`) instead of the eval-loss loop, reported exactly as the
            trainer's own evaluation is (log history, TensorBoard, best-model tracking, early stopping)."""
            if self.held_out is None:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            from lib import evaluate

            rows, batch_size = self.held_out
            was_training = self.model.training
            self.model.eval()
            with self.compute_loss_context_manager():  # in the training step's dtype (bf16 autocast where it trains so)
                metrics = evaluate.held_out_loss_and_letters(self.model, self.processing_class, rows, batch_size)
            self.model.train(was_training)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            print(
                f"[train] step {self.state.global_step}: held-out eval loss {metrics['eval_loss']:.4f}, letters "
                f"accuracy {metrics['eval_letters_accuracy']:.1%} (n={len(rows)})",
                flush=True,
            )
            return metrics

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or "input_ids" not in dataset.column_names:
                return super()._get_train_sampler(train_dataset)
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return WideLengthGroupedSampler(batch, lengths=[len(ids) for ids in dataset["input_ids"]])

    return LengthGroupedSFTTrainer


def score_only_supervised_positions() -> None:
    """Make TRL's fused LM head project only the positions that carry a label, on CPU too.

    TRL scores every position off-GPU (fixed tile shapes avoid recompiles on some accelerators); on a CPU that
    only wastes time: Gemma's 262k-vocab head is most of the FLOPs, and a Cosmos QA target is 2-3 tokens of a
    ~170-token example. Same loss to the last bit (tested), ~5x faster smoke steps.
    """
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    if getattr(original, "_scores_supervised_only", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact._scores_supervised_only, compact.original = True, original
    trl_utils._use_triton = compact


DTYPES = ("auto", "bf16", "fp32")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPUs that multiply bf16 in hardware (AVX512-BF16, AMX)


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose instruction set multiplies bf16 natively; elsewhere bf16 autocast is emulated and slow."""
    from lib import paths

    return bool(set(paths.machine()["cpu_flags"]) & set(NATIVE_BF16_FLAGS))


def training_dtype(requested: str = "auto") -> str:
    """The compute dtype a training step runs in: on a GPU, bf16 where it is supported, else fp16 (`requested` cannot
    ask for fp32 there); on a CPU, `auto` is bf16 autocast where the CPU computes bf16 natively and fp32 elsewhere,
    and `bf16` / `fp32` force one. LoRA weights and the optimizer stay fp32 on a CPU either way."""
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return requested


def cpu_substitutions(cfg) -> list[dict]:
    """What training `cfg` on this machine does differently from the GPU its hardware names: nothing on a GPU; on a
    CPU, one row per setting (`setting`, `gpu`, `here`, `why`). `train` prints them and records them in its summary.
    The `smoke` hardware is a CPU by design and names no GPU."""
    if torch.cuda.is_available() or cfg.hardware == "smoke":
        return []
    dtype = training_dtype(cfg.dtype)
    why = (
        "this CPU multiplies bf16 natively (AVX512-BF16 / AMX): bf16 autocast, like a GPU's mixed precision"
        if dtype == "bf16"
        else "this CPU has no native bf16 (or fp32 was asked for): emulated bf16 would be slower than fp32"
    )
    rows = [
        (
            "precision",
            "bf16 mixed precision (fp16 without bf16)",
            f"{dtype} (CPU autocast)" if dtype == "bf16" else dtype,
            why,
        ),
        (
            "bnb_4bit_compute_dtype",
            "bfloat16 (float16 without bf16)",
            "bfloat16" if dtype == "bf16" else "float32",
            why,
        ),
        (
            "LoRA weights",
            "bf16 (TRL casts the adapters of a quantized model)",
            "fp32 (master weights; the optimizer steps in fp32)",
            "small: fp32 costs nothing measurable and keeps the updates exact",
        ),
        (
            "4-bit matmul",
            "bitsandbytes CUDA kernels",
            f"NF4 dequantized to {dtype}, {dtype} matmul",
            "one kernel path on every CPU, with a backward (lib.models.one_cpu_4bit_kernel_path)",
        ),
        (
            "LM head and loss",
            "TRL's fused head over supervised positions",
            "the same head, plain torch",
            "TRL only compacts on GPU; forced on CPU (score_only_supervised_positions), same loss",
        ),
        (
            "attention",
            "sdpa (flash / memory-efficient CUDA kernels)",
            "sdpa (CPU math kernel)",
            "flash kernels are CUDA-only; the result is the same up to rounding",
        ),
    ]
    if "paged" in cfg.optimizer:
        rows.append(
            (
                "optimizer",
                f"{cfg.optimizer}: state paged from GPU to CPU memory under pressure",
                f"{cfg.optimizer} on bitsandbytes' CPU kernels, nothing to page",
                "paging needs CUDA memory",
            )
        )
    return [dict(zip(("setting", "gpu", "here", "why"), row)) for row in rows]


def default_report_to() -> str:
    """TensorBoard when it is installed (requirements.txt installs it), else no logger."""
    import importlib.util

    return "tensorboard" if importlib.util.find_spec("tensorboard") else "none"


def sft_config(
    cfg,
    output_dir: str | Path,
    has_eval: bool = True,
    pad_to_max: bool = False,
    report_to: str = "none",
    hub_checkpoints: str | None = None,
):
    """`hub_checkpoints`: a Hub repo id that receives every checkpoint as `last-checkpoint/` (private, token from
    the environment or Colab secrets), so a run can resume from the Hub when every local copy is gone."""
    from trl import SFTConfig

    gpu = torch.cuda.is_available()
    hub = (
        dict(
            push_to_hub=True,
            hub_model_id=hub_checkpoints,
            hub_strategy="checkpoint",
            hub_private_repo=True,
            hub_token=hub_token(),
        )
        if hub_checkpoints
        else {}
    )
    dtype = training_dtype(cfg.dtype)
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch,
        per_device_eval_batch_size=cfg.per_device_batch,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_steps,
        optim=cfg.optimizer,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=dtype == "bf16",
        fp16=dtype == "fp16",
        use_cpu=not gpu,
        max_length=None if pad_to_max else cfg.max_length,
        completion_only_loss=True,
        # batches of similar lengths: little padding without packing (which needs flash-attention to be exact)
        train_sampling_strategy="random" if pad_to_max else "group_by_length",
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=cfg.logging_steps,
        report_to=report_to,
        **hub,
        eval_on_start=has_eval,  # step 0 = the base model (LoRA starts as a no-op): the curve starts at the base
        seed=cfg.seed,
        data_seed=cfg.seed,
        load_best_model_at_end=cfg.early_stopping_patience is not None,
        metric_for_best_model="eval_loss" if cfg.early_stopping_patience is not None else None,
        dataloader_num_workers=0,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
    )  # LoRA on every layer: no unused parameters, no extra pass under DDP


def build_trainer(
    cfg,
    train_ds,
    eval_ds,
    output_dir: str | Path,
    pad_to_max: bool = False,
    model=None,
    tokenizer=None,
    callbacks: list | None = None,
    report_to: str = "none",
    hub_checkpoints: str | None = None,
    held_out: list[dict] | None = None,
):
    """SFTTrainer on the 4-bit base with LoRA; `pad_to_max` reproduces the prior work's batching (for the bench).
    Checkpoints go to `output_dir`, each marked complete once all its files are written (`last_checkpoint`).
    `held_out`: multiple-choice rows whose eval loss and letters accuracy every evaluation measures in one pass (the
    learning curve that chooses steps; early stopping reads it too)."""
    from peft import prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback

    tokenizer = tokenizer or models.load_tokenizer(cfg.model)
    prepare_pad_token(tokenizer)
    score_only_supervised_positions()
    if model is None:
        model = models.load_model(cfg.model, quantize_4bit=True)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    args = sft_config(
        cfg,
        output_dir,
        has_eval=eval_ds is not None and len(eval_ds) > 0,
        pad_to_max=pad_to_max,
        report_to=report_to,
        hub_checkpoints=hub_checkpoints,
    )
    callbacks = (
        list(callbacks or [])
        + [checkpoint_marker()]
        + ([EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience else [])
    )
    trainer = _length_grouped_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks,
    )
    if held_out:
        trainer.held_out = (held_out, max(cfg.per_device_batch, 16))
    trainer.data_collator = UsefulTokenCounter(trainer.data_collator)
    if pad_to_max:
        trainer.data_collator.collator.pad_to_multiple_of = cfg.max_length  # every batch padded to max_length
    if not torch.cuda.is_available():  # TRL keeps QLoRA adapters in bf16: on a CPU they are fp32 master weights
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        keep_4bit_layers_differentiable(trainer.model)
        if training_dtype(cfg.dtype) == "bf16":
            set_4bit_compute_dtype(trainer.model, torch.bfloat16)
            head_in(trainer.model, torch.bfloat16)
    return trainer


def head_in(model, dtype: torch.dtype) -> bool:
    """Give the frozen LM head its own copy in `dtype`: under autocast every step would otherwise cast it again
    (Gemma's 262k x 640 head, chunk by chunk: most of a bf16 step). The input embedding it may be tied to stays fp32,
    so the residual stream stays fp32 as in GPU QLoRA; LoRA weights and norms are untouched."""
    head = model.get_output_embeddings()
    if head is None or head.weight.requires_grad or head.weight.dtype == dtype:
        return False
    head.weight = torch.nn.Parameter(head.weight.detach().to(dtype), requires_grad=False)
    return True


def set_4bit_compute_dtype(model, dtype: torch.dtype) -> int:
    """Every 4-bit layer dequantizes into `dtype` and multiplies in it (the training step's compute dtype)."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.compute_dtype = dtype
    return len(layers)


def keep_4bit_layers_differentiable(model) -> int:
    """Keep a model's 4-bit layers on the CPU path that has a backward (`lib.models.one_cpu_4bit_kernel_path`,
    which `load_model` already applies): call it on a model you loaded and quantized yourself."""
    return models.one_cpu_4bit_kernel_path(model)
