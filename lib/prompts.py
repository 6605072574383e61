"""Prompt rendering shared by training and inference, so the two can never drift apart.

- Canarim -> the Alpaca-PT template of the prior work (byte-exact), with the tokenizer's own EOS appended.
- Cosmos QA PT -> chat messages rendered by `tokenizer.apply_chat_template`; the target is `Alternativa X`.
Each formatter returns `prompt` and `completion` separately (loss goes on the completion only) and `text`.
"""

from __future__ import annotations

import statistics

import datasets

from lib.data import LETTERS

ALPACA_PT_HEADER = (
    "Abaixo está uma instrução que descreve uma tarefa. Escreva uma resposta que conclua adequadamente a solicitação."
)
ALPACA_PT_HEADER_WITH_INPUT = (
    "Abaixo está uma instrução que descreve uma tarefa, emparelhada com uma entrada que "
    "fornece mais contexto. Escreva uma resposta que conclua adequadamente a solicitação."
)
COSMOS_SYSTEM_PROMPT = (
    "Você é um monitor que ajuda a responder aos usuários as respostas corretas das questões, "
    "como um gabarito. Sempre ajude o usuário respondendo a alternativa correta."
)
ANSWER_PREFIX = "Alternativa "


def _eos(tokenizer) -> str:
    if not getattr(tokenizer, "eos_token", None):
        raise ValueError("the tokenizer defines no eos_token: the model could never learn to stop")
    return tokenizer.eos_token


# ---------------------------------------------------------------- Canarim / Alpaca-PT


def alpaca_pt_prompt(instruction: str, input: str = "") -> str:
    """Everything up to and including `### Resposta:\\n`; the model writes the rest."""
    if input and input.strip():
        return (
            f"{ALPACA_PT_HEADER_WITH_INPUT}\n\n### Instrução:\n{instruction}\n\n"
            f"### Entrada:\n{input}\n\n### Resposta:\n"
        )
    return f"{ALPACA_PT_HEADER}\n\n### Instrução:\n{instruction}\n\n### Resposta:\n"


def format_alpaca_pt(row: dict, tokenizer) -> dict:
    """Canarim row -> {prompt, completion, text}; the completion ends with the tokenizer's EOS token."""
    prompt = alpaca_pt_prompt(row["instruction"], row.get("input") or "")
    completion = row["output"] + _eos(tokenizer)
    return {"prompt": prompt, "completion": completion, "text": prompt + completion}


# ---------------------------------------------------------------- Cosmos QA PT / chat


def cosmos_user_message(row: dict) -> str:
    options = "\n".join(f"Alternativa {letter}) {row[letter]}" for letter in LETTERS)
    return f"{row['contexto']}\n\n{row['pergunta']}\n\n{options}"


def cosmos_messages(row: dict, with_answer: bool = True) -> list[dict]:
    messages = [
        {"role": "system", "content": COSMOS_SYSTEM_PROMPT},
        {"role": "user", "content": cosmos_user_message(row)},
    ]
    if with_answer:
        messages.append({"role": "assistant", "content": ANSWER_PREFIX + row["Label"]})
    return messages


def render_cosmos(row: dict, tokenizer) -> dict:
    """Cosmos QA PT row -> {prompt, completion, text} with the model's chat template.

    `prompt` is exactly what inference feeds the model (generation prompt included); `prompt + completion` is
    exactly the rendered training conversation. Unlabeled rows (hidden test labels) get an empty completion.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "this tokenizer has no chat template; Cosmos QA prompts need a chat model "
            "(e.g. zephyr-7b-beta, embedded, embedded-small)"
        )
    prompt = tokenizer.apply_chat_template(
        cosmos_messages(row, with_answer=False), tokenize=False, add_generation_prompt=True
    )
    if not row.get("Label"):
        return {"prompt": prompt, "completion": "", "text": prompt}
    text = tokenizer.apply_chat_template(cosmos_messages(row), tokenize=False)
    if not text.startswith(prompt):
        raise ValueError(
            "the chat template renders the training conversation with a different prefix than the "
            "generation prompt; training and inference would see different text"
        )
    return {"prompt": prompt, "completion": text[len(prompt) :], "text": text}


# ---------------------------------------------------------------- datasets and token lengths


def format_dataset(ds: datasets.Dataset, formatter, tokenizer) -> datasets.Dataset:
    """Add prompt/completion/text columns (original columns kept for evaluation and traceability)."""
    return ds.map(lambda row: formatter(row, tokenizer), desc=f"format ({formatter.__name__})")


def token_lengths(texts, tokenizer) -> list[int]:
    # Rendered texts already contain any BOS the template wants; adding special tokens would double it.
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def length_report(lengths: list[int], max_length: int) -> dict:
    """Length statistics and what padding everything to `max_length` (the prior work's scheme) would waste."""
    if not lengths:
        return {"n": 0, "max_length": max_length}
    ordered = sorted(lengths)
    kept = [min(n, max_length) for n in lengths]
    return {
        "n": len(lengths),
        "mean": round(statistics.fmean(lengths), 1),
        "median": statistics.median(lengths),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "max_length": max_length,
        "n_over_max_length": sum(n > max_length for n in lengths),
        "tokens_cut": sum(n - max_length for n in lengths if n > max_length),
        "pad_to_max_waste": round(1 - sum(kept) / (max_length * len(lengths)), 4),
    }


def length_summary(formatted: datasets.DatasetDict, tokenizer, max_length: int):
    """Per split: the token length of every formatted `text`, and its `length_report`."""
    lengths = {split: token_lengths(ds["text"], tokenizer) for split, ds in formatted.items()}
    return lengths, {split: length_report(values, max_length) for split, values in lengths.items()}


def cosmos_training_example(row: dict) -> dict:
    """TRL conversational prompt/completion: rendered by the same chat template call as `render_cosmos`."""
    messages = cosmos_messages(row)
    return {"prompt": messages[:-1], "completion": messages[-1:]}
