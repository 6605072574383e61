"""Probes of what a GPU run depends on, for `lib.fitcheck`:

- activation accounting: the bytes autograd keeps per token per decoder layer in a GPU QLoRA step, counted tensor by
  tensor on a CPU that emulates the GPU's dtype chain (`activation_probe`, `probe_all`) — the evidence behind
  `lib.memory.activation_bytes_per_token`, the estimator's largest term (docs/fitcheck.md);
- the environment a first GPU run checks before anything else (`environment`): CUDA, compute capability, bf16, and
  whether bitsandbytes' CUDA kernels work.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from lib import memory, models, paths, train
from lib.models import architecture, random_model_folder


def activation_probe(
    preset: str,
    hardware: str = "colab-a100",
    tiny: bool = False,
    tokens: tuple = (128, 256),
    layers: int = 3,
    workdir: str | Path | None = None,
) -> dict:
    """Bytes autograd keeps per token per decoder layer in the GPU QLoRA training step, measured on CPU.

    The estimator's largest term (activations) depends on which tensors autograd saves and in which dtype, not on
    the device. This builds `layers` decoder layers of the preset's real widths (random bf16 weights), loads them in
    4-bit NF4 with a bf16 compute dtype, prepares them as `lib.sft.build_trainer` does on a GPU
    (`prepare_model_for_kbit_training`, the preset's LoRA, adapters cast to bf16 as TRL does, bf16 autocast as the
    Trainer does), and records every tensor saved for backward during one forward pass, attributing each storage to
    the decoder layer that saved it first. Parameters are left out; the per-token rate is the difference between two
    sequence lengths (a seq^2 term would show as a non-linear rate). Two CUDA behaviours are emulated: peft's LoRA
    layer checks `torch.is_autocast_enabled()` (CUDA's flag; False under CPU autocast) and dropout dispatches to
    the fused `native_dropout` (1-byte mask) as it does on CUDA. With gradient checkpointing a layer keeps only its
    input: `checkpoint_bytes_per_token_per_layer`.
    """
    import types
    from collections import Counter, defaultdict

    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    cfg = train.config_for(preset, hardware)
    spec = dict(architecture(cfg.model, tiny), num_hidden_layers=layers)
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fitcheck-probe-"))
    try:
        folder = random_model_folder(spec, workdir, dtype=torch.bfloat16)
        quant = models.bnb_4bit_config()
        quant.bnb_4bit_compute_dtype = torch.bfloat16  # the GPU's compute dtype (fp32 is CPU-only)
        net = AutoModelForCausalLM.from_pretrained(
            str(folder), quantization_config=quant, dtype=torch.bfloat16, device_map="cpu"
        )
        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=False)
        net = get_peft_model(net, memory.lora_config(cfg))
        for param in net.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
        for module in net.modules():  # CUDA's dropout: fused kernel, boolean mask
            if isinstance(module, torch.nn.Dropout):
                module.forward = types.MethodType(
                    lambda self, x: torch.native_dropout(x, self.p, self.training)[0], module
                )
        net.train()
        blocks = net.base_model.model.model.layers
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        where: dict = {"layer": None}
        seen: dict = {}
        inputs: dict = {}

        def enter(module, args, kwargs, i):
            where["layer"] = i
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[i] = hidden.untyped_storage().nbytes()

        for i, block in enumerate(blocks):
            block.register_forward_pre_hook(lambda m, a, k, i=i: enter(m, a, k, i), with_kwargs=True)
            block.register_forward_hook(lambda m, a, o: where.__setitem__("layer", None))

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params and storage.data_ptr() not in seen:
                seen[storage.data_ptr()] = (
                    where["layer"],
                    storage.nbytes(),
                    str(t.dtype).replace("torch.", ""),
                    tuple(t.shape),
                )
            return t

        cuda_flag = torch.is_autocast_enabled
        per_length, breakdown, layer_input = {}, {}, {}
        middle = layers // 2
        try:
            torch.is_autocast_enabled = lambda *a: cuda_flag(*a) if a else cuda_flag("cpu")  # noqa: E731
            for n in tokens:
                seen.clear()
                ids = torch.randint(0, spec["vocab_size"], (1, n))
                with (
                    torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
                    torch.autocast("cpu", dtype=torch.bfloat16),
                ):
                    out = net.base_model.model.model(input_ids=ids, attention_mask=torch.ones_like(ids))
                del out
                per_layer = defaultdict(int)
                kinds: Counter = Counter()
                for layer, nbytes, dtype, shape in seen.values():
                    per_layer[layer] += nbytes
                    if layer == middle:
                        kinds[f"{dtype} {'x'.join(map(str, shape))}"] += nbytes
                per_length[n] = per_layer[middle]
                breakdown[n] = dict(kinds)
                layer_input[n] = inputs[middle]
        finally:
            torch.is_autocast_enabled = cuda_flag
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    a, b = sorted(tokens)[:2]
    rate = (per_length[b] - per_length[a]) / (b - a)
    return {
        "preset": preset,
        "model": cfg.model,
        "architecture": spec,
        "tiny": tiny,
        "tokens": list(tokens),
        "lora_r": cfg.lora_r,
        "lora_targets": list(cfg.lora_targets),
        "saved_bytes_per_token_per_layer": rate,
        "saved_bytes_per_token_per_layer_per_hidden": round(rate / spec["hidden_size"], 3),
        "linear_in_tokens": all(abs(per_length[n] - rate * n) <= 0.01 * per_length[n] + 64 for n in tokens),
        "checkpoint_bytes_per_token_per_layer": (layer_input[b] - layer_input[a]) / (b - a),
        "middle_layer_breakdown": {k: v / b for k, v in sorted(breakdown[b].items(), key=lambda kv: -kv[1])},
    }


def probe_all(tiny: bool = False) -> dict:
    """`activation_probe` for every preset next to `lib.memory.activation_bytes_per_token` and the old assumption."""
    rows = []
    for preset in sorted(train.PRESETS):
        probe = activation_probe(preset, tiny=tiny)
        spec, cfg = probe["architecture"], train.config_for(preset)
        saved, kept = memory.activation_bytes_per_token(
            spec["hidden_size"],
            spec["intermediate_size"],
            spec["num_attention_heads"],
            spec["num_key_value_heads"],
            cfg.lora_r,
            cfg.lora_targets,
        )
        probe.update(
            estimator_saved_bytes=saved,
            estimator_checkpoint_bytes=kept,
            previous_assumption_saved_bytes=34 * spec["hidden_size"],
            previous_assumption_checkpoint_bytes=2 * spec["hidden_size"],
        )
        rows.append(probe)
        print(
            f"  {preset:<20} saved {probe['saved_bytes_per_token_per_layer']:.0f} B/token/layer "
            f"({probe['saved_bytes_per_token_per_layer_per_hidden']} x hidden; estimator {saved}, previously "
            f"{34 * spec['hidden_size']}); checkpointed {probe['checkpoint_bytes_per_token_per_layer']:.0f} "
            f"(estimator {kept})",
            flush=True,
        )
    return {
        "name": "fitcheck_activations",
        "tiny": tiny,
        "rows": rows,
        "versions": train.versions(),
        "device": "cpu, emulating the CUDA dtype chain (see lib.probes.activation_probe)",
    }


def environment() -> dict:
    """What a first GPU run checks before anything else: CUDA, compute capability, bf16, and whether bitsandbytes'
    CUDA kernels work — a 4-bit NF4 layer on the GPU against its own weights dequantized, and a paged 8-bit AdamW
    step. On a CPU it says there is no CUDA and stops there."""
    import bitsandbytes as bnb

    env = {
        "name": "environment",
        "machine": paths.machine(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "bitsandbytes": bnb.__version__,
        "cuda_available": torch.cuda.is_available(),
        "versions": train.versions(),
    }
    if not torch.cuda.is_available():
        return env
    props = torch.cuda.get_device_properties(0)
    env.update(
        device=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        memory_gb=round(props.total_memory / 1e9, 2),
        bf16=torch.cuda.is_bf16_supported(),
        compute_dtype=str(models.compute_dtype()),
    )
    try:
        torch.manual_seed(0)
        layer = bnb.nn.Linear4bit(512, 512, bias=False, compute_dtype=models.compute_dtype(), quant_type="nf4")
        layer = layer.cuda()  # quantizes on the GPU
        x = torch.randn(16, 512, device="cuda", dtype=models.compute_dtype())
        weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        reference = x.float() @ weight.t()
        error = ((layer(x).float() - reference).abs().max() / reference.abs().max()).item()
        param = torch.nn.Parameter(torch.randn(512, 512, device="cuda"))
        param.grad = torch.randn_like(param)
        bnb.optim.PagedAdamW8bit([param], lr=1e-3).step()
        env["bnb_cuda_kernels"] = {
            "ok": error < 2e-2 and bool(torch.isfinite(param).all()),
            "nf4_matmul_relative_error": round(error, 5),
            "paged_adamw_8bit_step": True,
        }
    except Exception as error:  # noqa: BLE001 - the report says what failed; the script goes on to the next step
        env["bnb_cuda_kernels"] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return env
