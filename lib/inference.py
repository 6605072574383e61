"""Inference helpers shared by evaluation, translation and chat: load a model (+ adapter) for inference, tokenize
exactly as training did, left-pad a batch, and generate greedily with the chat stop tokens."""

from __future__ import annotations

from pathlib import Path

import torch

from lib import models, paths


def load_for_eval(model: str, adapter: str | None = None, quantize_4bit: bool = False):
    """(model, tokenizer) in eval mode; `adapter` is a PEFT adapter folder (None = the base model)."""
    if adapter is not None:
        adapter = paths.resolve_source(str(adapter))  # a repo-relative folder works from any working directory
        folder = Path(adapter)
        if not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"adapter {adapter!r}: no adapter_config.json there. Pass the folder that "
                f"training saved (e.g. .../final_adapter), or adapter=None for the base model."
            )
    tokenizer = models.load_tokenizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # only for batching here; labels are not involved
    net = models.load_model(model, quantize_4bit=quantize_4bit)
    if adapter is not None:
        from peft import PeftModel

        net = PeftModel.from_pretrained(net, adapter)
    return net.eval(), tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the chat end-of-turn markers the tokenizer knows (Gemma stops on `<end_of_turn>`)."""
    ids = {tokenizer.eos_token_id}
    for token in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def device(model) -> torch.device:
    return next(model.parameters()).device


def left_padded(tokenizer, sequences: list[list[int]], device) -> dict:
    """Left padding with explicit position ids, so every row ends at the last column (only the last few positions
    need logits: `logits_to_keep`) and a padded row computes what it would alone: exactly in fp32; in 4-bit on CPU
    its scores move by up to ~0.08 in log-probability with the batch it is in (predictions were identical at batch
    1, 8 and 32)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq) :] = torch.tensor(seq)
        mask[i, width - len(seq) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def encode(tokenizer, text: str, plain_text: bool = False) -> list[int]:
    """Token ids exactly as TRL tokenized the training text: a rendered chat template carries its own BOS, while a
    plain-text prompt (Alpaca-PT) gets the tokenizer's special tokens (Gemma's / LLaMA's BOS)."""
    return tokenizer(text, add_special_tokens=plain_text)["input_ids"]


@torch.no_grad()
def generate(
    model, tokenizer, prompt_texts: list[str], max_new_tokens: int, batch_size: int = 8, plain_text: bool = False
) -> list[dict]:
    """Greedy, batched (left padding for generation). Per prompt: text, tokens generated, stopped_by_eos.
    `plain_text=True` for prompts that are not rendered chat templates (see `encode`)."""
    stops = stop_token_ids(tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out = []
    try:
        for start in range(0, len(prompt_texts), batch_size):
            chunk = prompt_texts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=plain_text).to(device(model))
            generated = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )[:, enc["input_ids"].shape[1] :]
            for seq in generated.tolist():
                stop_at = next((k for k, t in enumerate(seq) if t in stops), None)
                body = seq if stop_at is None else seq[:stop_at]
                out.append(
                    {
                        "text": tokenizer.decode(body, skip_special_tokens=True),
                        "new_tokens": len(body) + (stop_at is not None),
                        "stopped_by_eos": stop_at is not None,
                    }
                )
    finally:
        tokenizer.padding_side = side
    return out
