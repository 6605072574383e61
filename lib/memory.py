"""Sizes and memory of a QLoRA run, without a GPU or a download: parameter counts on the real architecture (meta
device), the LoRA shape, activation bytes per token, and the peak-memory estimate that notebooks 04/05 print and
`lib.fitcheck` measures against.
"""

from __future__ import annotations

import torch

from lib import models


def meta_model(model: str):
    """The real architecture on the meta device: shapes only, no weights, no download."""
    from transformers import AutoModelForCausalLM

    config = models.config_object(models.architecture(model))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def lora_parameter_count(cfg) -> int:
    from peft import get_peft_model

    return count_parameters(get_peft_model(meta_model(cfg.model), lora_config(cfg)))[0]


LORA_IN_FEATURES = {
    "q_proj": "hidden",
    "k_proj": "hidden",
    "v_proj": "hidden",
    "o_proj": "hidden",
    "gate_proj": "hidden",
    "up_proj": "hidden",
    "down_proj": "intermediate",
}


def activation_bytes_per_token(
    hidden: int, intermediate: int, heads: int, kv_heads: int, lora_r: int, lora_targets: tuple[str, ...]
) -> tuple[int, int]:
    """(bytes autograd saves per token per decoder layer, bytes kept per token per layer with gradient checkpointing)
    in QLoRA training on a GPU (bf16 autocast), for a LLaMA/Mistral layer.

    Counted tensor by tensor by `lib.probes.activation_probe` (docs/fitcheck.md), exactly for both presets:
    `prepare_model_for_kbit_training` casts the embedding and the norms to fp32, so the residual stream is fp32 and
    bitsandbytes returns each 4-bit projection in its input's dtype: the MLP's gate/up outputs and the SiLU output
    are fp32 (12 * intermediate), the two norm inputs too (8 * hidden); attention keeps bf16 query and output
    (4 * hidden), keys and values (4 * kv dim) and an fp32 log-sum-exp; each LoRA layer keeps its dropout mask
    (1 B), the bf16 input of A (2 B) per input feature and A's bf16 output (2 * r). A checkpointed layer keeps its
    fp32 input (4 * hidden).
    """
    kv_dim = kv_heads * (hidden // heads)
    width = {"hidden": hidden, "intermediate": intermediate}
    lora = sum(3 * width[LORA_IN_FEATURES[t]] + 2 * lora_r for t in lora_targets)
    return 12 * intermediate + 12 * hidden + 4 * kv_dim + 4 * heads + 8 + lora, 4 * hidden


def estimate_memory_gb(
    n_params: int,
    vocab: int,
    hidden: int,
    layers: int,
    lora_params: int,
    batch: int,
    seq_len: int,
    gradient_checkpointing: bool,
    optimizer_bytes: float = 8.0,
    activation_bytes: tuple[float, float] | None = None,
    embedding_bytes: int = 4,
    overhead_gb: float = 1.0,
) -> dict:
    """Rough peak GPU memory of QLoRA training, in GB (1e9 bytes). Assumptions:

    - base weights in 4-bit NF4 (0.5 B/param) plus double-quantised constants (~0.127 bit/param); the input
      embedding and LM head in fp32 (`prepare_model_for_kbit_training` casts every non-4-bit weight to fp32);
    - LoRA weights and their gradients in bf16 (4 B/param: TRL casts the adapters of a quantized model to bf16)
      plus optimizer state: 8 B/param for 32-bit AdamW, 2 B/param for 8-bit AdamW;
    - activations: `activation_bytes` = (saved per token per layer, kept per token per layer with checkpointing),
      from `activation_bytes_per_token` (measured tensor by tensor, no seq^2 term: memory-efficient attention);
      default (73 * hidden, 4 * hidden), Zephyr-7B's measured rate. With checkpointing, every layer keeps its input
      and one layer is recomputed in full during backward. (Until issue 13 this assumed ~34 * hidden bytes in
      16-bit, Korthikanti et al. 2022, and 2 * hidden kept: half of what QLoRA with an fp32 residual stream keeps);
    - logits in fp32 for the loss, plus their gradient: 2 * 4 * vocab bytes per token (an upper bound: TRL's fused
      LM head projects only supervised positions on GPU, in tiles of at most 4 096 tokens);
    - `overhead_gb` for the CUDA context, allocator fragmentation and temporary buffers.
    """
    saved, kept = activation_bytes or (73 * hidden, 4 * hidden)
    embed = 2 * vocab * hidden
    weights = (n_params - embed) * (0.5 + 0.127 / 8) + embed * embedding_bytes
    lora = lora_params * (4 + optimizer_bytes)
    tokens = batch * seq_len
    per_layer = saved * tokens
    activations = (layers * kept * tokens + per_layer) if gradient_checkpointing else layers * per_layer
    logits = 2 * 4 * vocab * tokens
    parts = {"weights": weights, "lora_and_optimizer": lora, "activations": activations, "logits": logits}
    gb = {k: round(v / 1e9, 2) for k, v in parts.items()}
    gb["overhead"] = overhead_gb
    gb["total"] = round(sum(parts.values()) / 1e9 + overhead_gb, 2)
    return gb


def estimate_for(cfg, spec: dict) -> dict:
    """`estimate_memory_gb` for a run configuration (`lib.train.TrainConfig`) on the architecture `spec` (a config
    dict as in `lib.models.ARCHITECTURES`; `lib.fitcheck` passes tiny or random-weight shapes too)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(models.config_object(spec))
    n_params = count_parameters(net)[1]
    lora = count_parameters(get_peft_model(net, lora_config(cfg)))[0]
    return estimate_memory_gb(
        n_params=n_params,
        vocab=spec["vocab_size"],
        hidden=spec["hidden_size"],
        layers=spec["num_hidden_layers"],
        lora_params=lora,
        batch=cfg.per_device_batch,
        seq_len=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        optimizer_bytes=2.0 if "8bit" in cfg.optimizer else 8.0,
        activation_bytes=activation_bytes_per_token(
            spec["hidden_size"],
            spec["intermediate_size"],
            spec["num_attention_heads"],
            spec["num_key_value_heads"],
            cfg.lora_r,
            cfg.lora_targets,
        ),
    )


def memory_estimate(cfg) -> dict:
    """Estimate for a preset on its hardware (`lib.train.TrainConfig`; real architectures only), with a warning past
    the budget."""
    if cfg.model not in models.ARCHITECTURES:
        return {"total": None, "note": f"no architecture card for {cfg.model!r} (CPU smoke run: RAM is not the limit)"}
    estimate = estimate_for(cfg, models.architecture(cfg.model))
    estimate["budget"] = cfg.memory_gb
    estimate["fits"] = estimate["total"] <= cfg.memory_gb
    if not estimate["fits"]:
        estimate["warning"] = (
            f"estimated {estimate['total']} GB exceeds the {cfg.memory_gb} GB of {cfg.hardware}: "
            f"lower per_device_batch or max_length, or enable gradient checkpointing"
        )
    return estimate
