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


def cache_rows(cache, index: torch.Tensor):
    """A KV cache holding the rows `index` of `cache` (repeats allowed); `cache` stays as it is (selection makes new
    tensors)."""
    import copy

    picked = copy.copy(cache)
    picked.layers = [copy.copy(layer) for layer in cache.layers]
    picked.batch_select_indices(index)
    return picked


def _stop_at(text: str, stop_strings: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stop_strings if s and s in text]
    return min(found) if found else None


def _left_padded_cache(caches: list, total: int):
    """One batched KV cache from single-row caches of different lengths: each row left-padded (zeros) so that all
    end at slot `total` — the standard left-padded layout, exact with sliding-window layers too, since every hole lies
    before all of a row's real tokens. A sliding-window layer keeps at most its window: its rows are padded to the
    longest row it holds, and it counts `total` tokens seen."""
    import copy

    batched = copy.copy(caches[0])
    batched.layers = []
    for layer_index, first in enumerate(caches[0].layers):
        layer = copy.copy(first)
        rows = [c.layers[layer_index] for c in caches]
        width = max(r.keys.shape[-2] for r in rows)

        def pad(t, width=width):
            return torch.nn.functional.pad(t, (0, 0, width - t.shape[-2], 0))

        layer.keys = torch.cat([pad(r.keys) for r in rows])
        layer.values = torch.cat([pad(r.values) for r in rows])
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = total
        batched.layers.append(layer)
    return batched


@torch.no_grad()
def generate_after_prefix(
    model,
    tokenizer,
    prefix: list[int],
    suffixes: list[list[int]],
    max_new_tokens: int,
    stop_strings: tuple[str, ...] = (),
    batch_size: int = 8,
    on_done=None,
) -> list[dict]:
    """Greedy continuations of `prefix + suffix` for every suffix, the prefix's KV cache computed once and shared.

    The few-shot prompts of a benchmark task share their instruction and examples: one pass over them; then each
    item's own tokens go through over a copy of that cache (one row each: no padding, so no hole inside a
    sliding window), and the items decode together in batches (sorted by length, left-padded before all their
    tokens: exact). A row leaves the batch when it emits a stop token (EOS, end-of-turn) or its text contains a stop
    string (cut there, as lm-eval's `until`). Same tokens as generating each full prompt alone (tested, Gemma's
    512-token sliding window included). `on_done(i, result)` is called as soon as item i finishes (crash-safe
    callers append it to their cache). Per item: text, new_tokens, stopped_by_eos, stopped_by_string."""
    dev, stops = device(model), set(stop_token_ids(tokenizer))
    width_prefix = len(prefix)
    first = model(input_ids=torch.tensor([prefix], device=dev), use_cache=True, logits_to_keep=1)
    one_row = torch.zeros(1, dtype=torch.long, device=dev)
    results: list[dict | None] = [None] * len(suffixes)
    order = sorted(range(len(suffixes)), key=lambda i: len(suffixes[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(suffixes[i]) for i in chunk)
        caches, logits = [], []
        for i in chunk:  # each item's own tokens, exactly as a whole prompt would compute them
            n = len(suffixes[i])
            row = model(
                input_ids=torch.tensor([suffixes[i]], device=dev),
                position_ids=torch.arange(width_prefix, width_prefix + n, device=dev)[None],
                past_key_values=cache_rows(first.past_key_values, one_row),
                use_cache=True,
                logits_to_keep=1,
            )
            caches.append(row.past_key_values)
            logits.append(row.logits[:, -1])
        total = width_prefix + width
        mask = torch.ones((len(chunk), total), dtype=torch.long, device=dev)
        for j, i in enumerate(chunk):
            mask[j, : width - len(suffixes[i])] = 0
        position = torch.tensor([[width_prefix + len(suffixes[i]) - 1] for i in chunk], device=dev)
        cache, next_logits = _left_padded_cache(caches, total), torch.cat(logits)
        alive, tokens = list(chunk), {i: [] for i in chunk}
        for step in range(max_new_tokens):
            keep = []
            for j, (i, token) in enumerate(zip(alive, next_logits.argmax(dim=-1).tolist())):
                text = tokenizer.decode(tokens[i] + [token], skip_special_tokens=True)
                cut = _stop_at(text, stop_strings)
                if token in stops or cut is not None:
                    done = {
                        "text": text[:cut]
                        if cut is not None
                        else tokenizer.decode(tokens[i], skip_special_tokens=True),
                        "new_tokens": len(tokens[i]) + 1,
                        "stopped_by_eos": token in stops,
                        "stopped_by_string": cut is not None and token not in stops,
                    }
                    results[i] = done
                    if on_done:
                        on_done(i, done)
                else:
                    tokens[i].append(token)
                    keep.append(j)
            if len(keep) < len(alive) and keep:
                index = torch.tensor(keep, device=dev)
                cache.batch_select_indices(index)
                mask, position = mask[index], position[index]
            alive = [alive[j] for j in keep]
            if not alive or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=dev)], dim=1)
            position = position + 1
            out = model(
                input_ids=torch.tensor([[tokens[i][-1]] for i in alive], device=dev),
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache, next_logits = out.past_key_values, out.logits[:, -1]
        for i in alive:  # ran out of new tokens
            if results[i] is None:
                results[i] = {
                    "text": tokenizer.decode(tokens[i], skip_special_tokens=True),
                    "new_tokens": len(tokens[i]),
                    "stopped_by_eos": False,
                    "stopped_by_string": False,
                }
                if on_done:
                    on_done(i, results[i])
    return results


def shared_prefix(sequences: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every sequence at least one token of its own."""
    if not sequences:
        return 0
    n = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for k in range(max(n, 0)):
        if any(s[k] != first[k] for s in sequences[1:]):
            return k
    return max(n, 0)
