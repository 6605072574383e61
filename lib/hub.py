"""Publishing to the Hugging Face Hub: the token, what an upload sends, adapter and dataset pushes, dataset cards.

Tokens come from the environment or Colab's secrets (`lib.secrets`), never from a notebook, and are never printed;
every push has a dry-run twin (`upload_plan`, `dataset_upload_plan`) that lists exactly what would be sent.
"""
from __future__ import annotations

from pathlib import Path

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
UPLOAD_PATTERNS = ("README.md", "adapter_config.json", "adapter_model.safetensors", "training_summary.json",
                   "tokenizer*", "special_tokens_map.json", "chat_template.jinja")


def upload_plan(adapter_dir: str | Path, repo_id: str, private: bool = True, checkpoints: bool = False) -> dict:
    """What `push_adapter` sends: the repo, its visibility, and the files (those present, or those training writes)."""
    import fnmatch

    folder = Path(adapter_dir)
    present = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    files = [n for n in present if any(fnmatch.fnmatch(n, pattern) for pattern in UPLOAD_PATTERNS)] if present else [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "training_summary.json",
        "tokenizer.json", "tokenizer_config.json", "chat_template.jinja (chat models)"]
    return {"repo_id": repo_id, "private": private, "folder": str(folder), "files": files,
            "checkpoints": "every checkpoint as last-checkpoint/ (hub_strategy=checkpoint)" if checkpoints else None,
            "token": _token_state()}


def push_adapter(adapter_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload the final adapter with its card to a Hub model repo (created private unless `private=False`)."""
    from huggingface_hub import HfApi

    api = HfApi(token=require_token())
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(adapter_dir), allow_patterns=list(UPLOAD_PATTERNS),
                               commit_message="final adapter and model card (lib.train)")
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)


# ---------------------------------------------------------------- datasets (lib.translate)

COSMOS_QA = {"id": "allenai/cosmos_qa", "license": "cc-by-4.0",
             "citation": "Huang et al., Cosmos QA: Machine Reading Comprehension with Contextual Commonsense "
                         "Reasoning, EMNLP 2019"}


def dataset_card(num_rows: dict[str, int], translation: dict, source: str = COSMOS_QA["id"]) -> str:
    """README.md of a translated Cosmos QA dataset: metadata (license, language, splits, files), how it was made
    (engine and version, quality estimate, post-edits, reference scores), its columns and its limits."""
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = list(num_rows)
    meta = DatasetCardData(
        language=["pt"], license=COSMOS_QA["license"], task_categories=["multiple-choice"],
        task_ids=["multiple-choice-qa"], source_datasets=[source], pretty_name="Cosmos QA pt-BR",
        size_categories=["n<1K" if sum(num_rows.values()) < 1000 else "10K<n<100K"],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}])
    qe = translation.get("qe") or {}
    engine = translation.get("engine") or {}
    lines = [
        "# Cosmos QA, Brazilian Portuguese", "",
        f"[Cosmos QA]({'https://huggingface.co/datasets/' + source}) ({COSMOS_QA['citation']}; license "
        f"{COSMOS_QA['license']}) translated into Brazilian Portuguese by notebook 01 of "
        "[ptbr-llm-lab](https://github.com/ptbr-llm-lab/ptbr-llm-lab).", "",
        "## Columns", "",
        "The schema of `heloisy/cosmos_qa_ptbr`: `id` (the English record's id), `contexto` (the story), `pergunta` "
        "(the question), `A`, `B`, `C`, `D` (the options, in the English order `answer0..answer3`), `Label` (the "
        "right option as a letter; empty where the source has no label). \"None of the above choices .\" is always "
        "\"Nenhuma das opções acima.\".", "",
        "## Splits", "", "| split | rows |", "|---|---|", *[f"| {s} | {n} |" for s, n in num_rows.items()], "",
        "## How it was made", "",
        f"- Backend: `{translation.get('backend')}`" + (f", model `{translation['model']}`" if translation.get("model")
                                                       else ""),
    ]
    if engine:
        lines.append(f"- Engine: {engine.get('engine')}, `{engine.get('package')}`; models: "
                     + "; ".join(f"{d} {m}" for d, m in (engine.get("models") or {}).items()))
    lines += [
        "- Text handling: paragraph breaks kept, URLs / e-mails / paths / emoji / numbers protected and checked, the "
        "source's tokenization undone, one sentence at a time (`lib/mt.py`).",
        f"- Quality estimate (offline: round-trip chrF with the pt→en model, length ratios, protected spans, "
        f"repetition, English left over, identical options): {qe.get('flagged', 0)} of {qe.get('rows', 0)} rows "
        f"flagged at threshold {qe.get('threshold')}; mean round-trip chrF {qe.get('round_trip_chrf_mean')}.",
        f"- LLM post-edits of flagged rows: {translation.get('post_edited', 0)}.",
    ]
    if translation.get("chrf") is not None:
        lines.append(f"- Against careful human references ({translation.get('reference_rows')} rows): chrF "
                     f"{translation['chrf']}, BLEU {translation['bleu']} (sacrebleu).")
    lines += ["", "## Limits", "",
              "Machine translation: idioms can come out literal and gender agreement can slip; numbers and amounts "
              "keep the English notation (3.5, $1,250.00). Rows the quality estimate flagged are listed in the "
              "repository's `flagged.jsonl` with their reasons."]
    card = DatasetCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    DatasetCard(str(card))  # round trip: the metadata parses back or this raises
    return str(card)


def dataset_upload_plan(num_rows: dict[str, int], repo_id: str, private: bool = True) -> dict:
    """What `push_dataset` sends: one Parquet file per split under data/ and the dataset card."""
    return {"repo_id": repo_id, "repo_type": "dataset", "private": private,
            "files": ["README.md"] + [f"data/{s}-00000-of-00001.parquet ({n} rows)" for s, n in num_rows.items()],
            "token": _token_state()}


def push_dataset(dataset, repo_id: str, card: str, private: bool = True) -> str:
    """Upload a DatasetDict (Parquet per split) and then its card to a Hub dataset repo (private unless told)."""
    from huggingface_hub import HfApi

    token = require_token()
    dataset.push_to_hub(repo_id, private=private, token=token, commit_message="data (lib.translate)")
    commit = HfApi(token=token).upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md",
                                            repo_id=repo_id, repo_type="dataset",
                                            commit_message="dataset card (lib.translate)")
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)
