"""Runs that outlive a Colab runtime (issue 17): checkpoints and caches in a persist dir survive a lost runtime and a
damaged newest checkpoint; TensorBoard events are written and readable; adapters leave with a model card that
validates; pushing to the Hub sends exactly what the dry run lists."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from lib import data, hub, paths, pipeline, synthetic, train
from tests.chat_server import ChatServer

ROOT = paths.ROOT


def _wait_for(path, process, seconds=600):
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.slow
def test_lost_runtime_resumes_from_the_persist_dir_past_a_damaged_checkpoint(tmp_path):
    """kill -9 after checkpoint-4, damage it, delete the clone's output folder: the rerun resumes from the persist
    dir's newest *complete* checkpoint (2), says so, ends at the planned step with a continuous log, mirrors the
    final adapter there, and leaves TensorBoard events with loss, learning rate and held-out accuracy."""
    source = tmp_path / "mc"
    for split, ds in synthetic.generate(seed=7, sizes={"train": 16, "validation": 4}).items():
        data.write_jsonl(ds, source / f"{split}.jsonl")
    out, persist = tmp_path / "clone" / "run", tmp_path / "drive" / "run"
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
        "--persist-dir",
        str(persist),
        "--max-steps",
        "6",
        "--save-steps",
        "2",
        "--eval-steps",
        "2",
        "--validation-rows",
        "4",
        "--batch-size",
        "2",
        "--per-device-batch",
        "2",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(persist / "checkpoint-4" / hub.COMPLETE, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (persist / "final_adapter").exists() and not list(out.glob("checkpoint-*")), "checkpoints went local"
    weights = persist / "checkpoint-4" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a sync cut short
    shutil.rmtree(tmp_path / "clone", ignore_errors=True)  # the runtime and its disk are gone
    assert hub.last_checkpoint(persist).endswith("checkpoint-2")

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint-4 is incomplete" in result.stdout and "resuming from" in result.stdout
    summary = json.loads((out / "final_adapter" / "training_summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 6
    assert [e["step"] for e in summary["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert (persist / "final_adapter" / "adapter_model.safetensors").is_file()
    assert (out / "final_adapter" / "README.md").read_text().startswith("---\n")  # the model card
    assert [e["step"] for e in summary["log_history"] if "eval_letters_accuracy" in e] == [0, 2, 4, 6]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for run in (persist / "runs").iterdir():
        events = EventAccumulator(str(run))
        events.Reload()
        tags |= set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "eval/letters_accuracy", "eval/loss"} <= tags, tags


def test_only_complete_checkpoints_are_resumed_from(tmp_path):
    for step in (2, 4, 6):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x" * 100)
        (folder / "trainer_state.json").write_text("{}")
        if step != 6:  # checkpoint-6: cut short before its marker
            hub.mark_complete(folder)
    assert hub.last_checkpoint(tmp_path).endswith("checkpoint-4")
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{")  # a file changed after the save
    assert hub.last_checkpoint(tmp_path).endswith("checkpoint-2")
    (tmp_path / "checkpoint-2" / "adapter_model.safetensors").unlink()
    assert hub.last_checkpoint(tmp_path) is None
    assert hub.last_checkpoint(tmp_path / "missing") is None


def test_mirror_replaces_the_copy_whole(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("new")
    dst = tmp_path / "drive" / "results"
    dst.mkdir(parents=True)
    (dst / "stale.txt").write_text("old")
    assert paths.mirror(src, dst) == dst
    assert sorted(p.name for p in dst.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in dst.parent.iterdir()) == ["results"]  # no staging copy left behind


@pytest.mark.slow
def test_translation_resumes_from_the_persist_dir_on_a_fresh_clone(tmp_path):
    """kill -9 mid-run, lose the output folder: the rerun with the same persist dir asks for no record twice."""
    sample = paths.SAMPLES / "cosmos_qa_en.jsonl"
    with ChatServer(delay=0.05) as server:
        persist = tmp_path / "drive"

        def command(out):
            return [
                sys.executable,
                "-m",
                "lib.translate",
                "--source",
                str(sample),
                "--output-dir",
                str(out),
                "--backend",
                "openai",
                "--model",
                "m",
                "--base-url",
                server.base_url,
                "--workers",
                "2",
                "--persist-dir",
                str(persist),
            ]

        process = subprocess.Popen(
            command(tmp_path / "clone1"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while len(server.requests) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        cached = [json.loads(line)["id"] for line in (persist / "cache.jsonl").read_text().splitlines()]
        assert 0 < len(cached) < 44 and not (tmp_path / "clone1" / "cache.jsonl").exists()
        shutil.rmtree(tmp_path / "clone1", ignore_errors=True)
        subprocess.run(command(tmp_path / "clone2"), cwd=ROOT, check=True, capture_output=True, timeout=300)
        counts = Counter(r["context"] for r in server.requests)
    rows = {r["id"]: r for r in data.read_jsonl(sample)}
    assert all(counts[rows[i]["context"]] == 1 for i in cached), "a record cached before the kill was asked again"
    assert max(counts.values()) <= 2  # only the records in flight at the kill are asked once more
    assert set(counts) == {r["context"] for r in rows.values()}
    assert len(data.read_jsonl(tmp_path / "clone2" / "train.jsonl")) == 44


@pytest.mark.parametrize(
    "adapter",
    sorted((paths.ROOT / "results" / "smoke").glob("*/adapter/final_adapter")),
    ids=lambda p: p.parents[1].name,
)
def test_committed_adapters_carry_a_card_whose_metadata_validates(adapter):
    from huggingface_hub import ModelCard

    committed = (adapter / "README.md").read_text(encoding="utf-8")
    card = ModelCard(committed)
    assert card.data.library_name == "peft" and card.data.language == ["pt"]
    assert card.data.eval_results, "the 06/07 results are in model-index"
    assert all(r.metric_value is not None and r.dataset_split for r in card.data.eval_results)
    for section in (
        "## Training",
        "**Base model**",
        "**Data**",
        "**Prompt format**",
        "**LoRA**",
        "**Hyperparameters**",
        "## Results and limitations",
        "## Loading",
    ):
        assert section in committed
    assert hub.model_card(adapter) == committed, "run `python -m lib.report` (the cards follow the results)"


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records what would be sent."""

    calls: list = []

    def __init__(self, token=None):
        FakeHub.calls.append(("token", bool(token)))

    def create_repo(self, repo_id, private, exist_ok, repo_type):
        FakeHub.calls.append(("create_repo", repo_id, private))

    def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
        import fnmatch

        sent = sorted(
            p.name
            for p in __import__("pathlib").Path(folder_path).iterdir()
            if any(fnmatch.fnmatch(p.name, pattern) for pattern in allow_patterns)
        )
        FakeHub.calls.append(("upload_folder", repo_id, sent))
        return "https://huggingface.co/commit"


def test_push_sends_exactly_what_the_dry_run_lists_privately(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    adapter = tmp_path / "final_adapter"
    shutil.copytree(paths.ROOT / "results" / "smoke" / "04_qlora_canarim" / "adapter" / "final_adapter", adapter)
    (adapter / "training_args.bin").write_bytes(b"pickle")  # never shared
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    plan = hub.upload_plan(adapter, "me/adapter")
    hub.push_adapter(adapter, "me/adapter")
    assert ("create_repo", "me/adapter", True) in FakeHub.calls and ("token", True) in FakeHub.calls
    assert ("upload_folder", "me/adapter", plan["files"]) in FakeHub.calls
    assert "README.md" in plan["files"] and "training_args.bin" not in plan["files"] and plan["private"]
    assert "x" * 34 not in json.dumps(plan)  # the token itself is never shown


@pytest.mark.slow
def test_push_dry_run_lists_the_uploads_without_a_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lib.train",
            "--preset",
            "sabia-canarim",
            "--hardware",
            "rtx3090",
            "--output-dir",
            str(tmp_path / "run"),
            "--persist-dir",
            str(tmp_path / "drive"),
            "--push-to-hub",
            "me/sabia-canarim-lora",
            "--hub-checkpoints",
            "--dry-run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    plan = json.loads(result.stdout)
    uploads = plan["uploads"]
    assert uploads["repo_id"] == "me/sabia-canarim-lora" and uploads["private"] is True
    assert "README.md" in uploads["files"] and "adapter_model.safetensors" in uploads["files"]
    assert uploads["checkpoints"] and "missing" in uploads["token"]
    assert plan["checkpoints"] == str(tmp_path / "drive") and "--persist-dir" in plan["command"]


def test_push_without_a_token_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cfg = train.config_for("zephyr-cosmosqa", "smoke", model="embedded-small", max_steps=1)
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        train.train(cfg, tmp_path / "run", push_to_hub="me/repo")
    assert not (tmp_path / "run").exists()


def test_every_notebook_takes_a_persist_dir_and_the_pipeline_passes_it():
    for notebook in pipeline.notebooks():
        assert "persist_dir" in pipeline.declared_parameters(notebook), notebook.name
    planned = pipeline.plan("smoke", overrides={"persist_dir": "/content/drive/MyDrive/ptbr-llm-lab"})
    assert all(params["persist_dir"] == "/content/drive/MyDrive/ptbr-llm-lab" for _, params in planned)
