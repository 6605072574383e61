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


def lm_head(causal, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 logits of a causal LM for some hidden states, as its forward computes them (Gemma's soft-capping too)."""
    logits = causal.get_output_embeddings()(hidden).float()
    cap = getattr(causal.config, "final_logit_softcapping", None) or getattr(
        getattr(causal.config, "text_config", None), "final_logit_softcapping", None
    )
    return torch.tanh(logits / cap) * cap if cap else logits


def _left_aligned(cache, prefix_len: int, lengths: list[int], total: int):
    """The cache of a right-padded pass (rows `[prefix][item][pads]`) rearranged as standard left padding (rows
    `[holes][prefix][item]`, all ending at slot `total`), so that decoding appends after every row's real tokens and
    a sliding window never holds a hole between them. A sliding-window layer (which recorded its whole pass) keeps
    each row's last `window - 1` real tokens and counts `total` tokens seen."""
    for layer in cache.layers:
        sliding = hasattr(layer, "cumulative_length")
        kept = layer.keys.shape[-2] - (total - prefix_len) if sliding else prefix_len  # the prefix slots held
        rows_k, rows_v = [], []
        for j, n in enumerate(lengths):
            k, v = layer.keys[j : j + 1, :, : kept + n], layer.values[j : j + 1, :, : kept + n]
            if sliding:
                k, v = k[:, :, -(layer.sliding_window - 1) :], v[:, :, -(layer.sliding_window - 1) :]
            rows_k.append(k)
            rows_v.append(v)
        width = max(k.shape[-2] for k in rows_k)
        layer.keys = torch.cat([torch.nn.functional.pad(k, (0, 0, width - k.shape[-2], 0)) for k in rows_k])
        layer.values = torch.cat([torch.nn.functional.pad(v, (0, 0, width - v.shape[-2], 0)) for v in rows_v])
        if sliding:
            layer.cumulative_length, layer.record_past = total, False
    return cache


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

    The few-shot prompts of a benchmark task share their instruction and examples: one pass over them; then the items
    go in batches (sorted by length) over copies of that cache: their own tokens in one right-padded pass (a real
    token never sees a later pad), the first new token read at each row's last real token, then the cache rearranged
    as left padding (`_left_aligned`) and the rows decode together. Exact: no hole ever sits inside a sliding window.
    A row leaves the batch when it emits a stop token (EOS, end-of-turn) or its text contains a stop string (cut
    there, as lm-eval's `until`). Same tokens as generating each full prompt alone (tested, Gemma's 512-token sliding
    window included). `on_done(i, result)` is called as soon as item i finishes (crash-safe callers append it to their
    cache). Per item: text, new_tokens, stopped_by_eos, stopped_by_string."""
    dev, stops = device(model), set(stop_token_ids(tokenizer))
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers stay in place
    width_prefix = len(prefix)
    first = model(input_ids=torch.tensor([prefix], device=dev), use_cache=True, logits_to_keep=1)
    results: list[dict | None] = [None] * len(suffixes)
    order = sorted(range(len(suffixes)), key=lambda i: len(suffixes[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        lengths = [len(suffixes[i]) for i in chunk]
        width, total = max(lengths), width_prefix + max(lengths)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.ones((len(chunk), total), dtype=torch.long)
        for j, i in enumerate(chunk):
            ids[j, : lengths[j]] = torch.tensor(suffixes[i])
            mask[j, width_prefix + lengths[j] :] = 0
        cache = cache_rows(first.past_key_values, torch.zeros(len(chunk), dtype=torch.long, device=dev))
        for layer in cache.layers:
            if hasattr(layer, "activate_past_recording"):
                layer.activate_past_recording()  # keep every row's real tokens until `_left_aligned` picks them
        hidden = causal.model(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=torch.arange(width_prefix, total, device=dev)[None].expand(len(chunk), -1),
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
        last = torch.tensor(lengths, device=dev) - 1
        next_logits = lm_head(causal, hidden[torch.arange(len(chunk), device=dev), last])
        cache = _left_aligned(cache, width_prefix, lengths, total)
        mask = torch.ones((len(chunk), total), dtype=torch.long, device=dev)
        for j, n in enumerate(lengths):
            mask[j, : width - n] = 0
        position = torch.tensor([[width_prefix + n - 1] for n in lengths], device=dev)
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
