"""The 7B path rehearsed on a CPU: real tokenizers and architectures (the presets' tiny twins, `lib.models`), tokenizer
parity against published ids, and the checks that must hold with the real tokenizers.

`python -m lib.pipeline --profile rehearsal` runs notebooks 02-09 with the full profile's parameters on the twins
(every replacement and CPU substitution listed), then `checks` on what they wrote; `report` gathers it all into
`results/rehearsal/pipeline.json`. `python -m lib.rehearsal` writes only `results/rehearsal/tokenizers.json`.
What only a GPU can show (memory, bf16, CUDA kernels, speed) is `scripts/gpu_first_run.sh`'s job.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lib import models, paths

REFERENCES = paths.DATA / "tokenizers" / "reference_ids.json"
TWINS = {real: name for name, preset in models.PRESETS.items() if (real := preset.twin_of)}
ROUTE = {
    True: "the repo's tokenizer.json as written, loaded by PreTrainedTokenizerFast (lib.spm.sentencepiece_route)",
    False: "tokenizer.model converted to a Hub-style tokenizer.json (lib.spm.sentencepiece_to_tokenizer_json), "
    "loaded by PreTrainedTokenizerFast (lib.spm.sentencepiece_route)",
}


# ---------------------------------------------------------------- tokenizer parity


def mistral_instruct_v1_ids(tokenizer, system: str | None, messages: list[dict]) -> list[int]:
    """mistral-common's v1 instruct encoding: BOS, each user turn encoded alone as `[INST] text [/INST]` (a system
    prompt joins the first one), each answer encoded alone and followed by EOS."""
    ids = [tokenizer.bos_token_id]
    for i, message in enumerate(messages):
        text = message["content"]
        if message["role"] == "user":
            if system and i == 0:
                text = f"{system}\n\n{text}"
            ids += tokenizer(f"[INST] {text} [/INST]", add_special_tokens=False)["input_ids"]
        else:
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ids


def reference_cases(real: str, tokenizer) -> list[tuple[str, list[int], list[int]]]:
    """(what, published ids, ids this tokenizer gives) for every published case of `real`'s tokenizer."""
    refs = json.loads(REFERENCES.read_text(encoding="utf-8"))[real]
    cases = [
        (repr(c["text"]), c["ids"], tokenizer(c["text"], add_special_tokens=False)["input_ids"])
        for c in refs.get("text", [])
    ]
    cases += [
        (f"mistral-common {c['case']}", c["ids"], mistral_instruct_v1_ids(tokenizer, c["system"], c["messages"]))
        for c in refs.get("mistral_instruct_v1", [])
    ]
    for c in refs.get("chat_template", []):
        # published without a BOS; the project's template puts the model card's `<s>` first (lib.models)
        rendered = tokenizer.apply_chat_template(
            c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"]
        )
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        bos = rendered.startswith(tokenizer.bos_token) and ids[:1] == [tokenizer.bos_token_id]
        same_text = rendered[len(tokenizer.bos_token) :] == c["rendered"] if bos else rendered == c["rendered"]
        cases.append((f"chat template: {c['case']}", c["ids"], (ids[1:] if bos else ids) if same_text else []))
    return cases


def sentencepiece_texts() -> list[str]:
    """Texts to compare with SentencePiece itself: llama.cpp's hard cases and every shipped sample's Portuguese."""
    from lib import data

    texts = [c["text"] for c in json.loads(REFERENCES.read_text(encoding="utf-8"))["sabia-7b"]["text"]]
    for row in data.read_jsonl(paths.SAMPLES / "canarim.jsonl")[:40]:
        texts += [row["instruction"], row["output"]]
    for row in data.read_jsonl(paths.SAMPLES / "cosmos_qa_ptbr" / "validation.jsonl")[:40]:
        texts += [row["contexto"], row["pergunta"], row["A"]]
    return texts


def tokenizer_parity(real: str) -> dict:
    """How many published id sequences the project's route to `real`'s tokenizer reproduces (on its twin, which
    holds the same files), next to what transformers' default route (`AutoTokenizer`) would give; and agreement with
    SentencePiece itself (the tokenizer the model was pre-trained with) on hard cases and the shipped Portuguese."""
    import sentencepiece
    from transformers import AutoTokenizer

    name = TWINS[real]
    ours, folder = models.load_tokenizer(name), models.resolve(name)[0]
    cases = reference_cases(real, ours)
    default = AutoTokenizer.from_pretrained(folder)
    spm = sentencepiece.SentencePieceProcessor(model_file=str(Path(folder) / "tokenizer.model"))
    texts = sentencepiece_texts()
    same = [ours(t, add_special_tokens=False)["input_ids"] == spm.encode(t) for t in texts]
    return {
        "preset": real,
        "tokenizer": name,
        "route": ROUTE[real in models.SHIPS_TOKENIZER_JSON],
        "reference_strings": len(cases),
        "matched": sum(want == got for _, want, got in cases),
        "mismatched": [what for what, want, got in cases if want != got][:10],
        "default_route_matched": sum(want == got for _, want, got in reference_cases(real, default)),
        "sentencepiece_texts": len(texts),
        "sentencepiece_matched": sum(same),
        "default_route_sentencepiece_matched": sum(
            default(t, add_special_tokens=False)["input_ids"] == spm.encode(t) for t in texts
        ),
        "source": json.loads(REFERENCES.read_text(encoding="utf-8"))[real]["source"],
    }


def write_tokenizers_report(out: str | Path) -> dict:
    result = {"presets": [tokenizer_parity(real) for real in TWINS]}
    paths.write_json(result, out)
    return result


# ---------------------------------------------------------------- checks that must hold with the real tokenizers


def _check(name: str, ok: bool, detail) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail}


def _sample_rows(source: str, schema: str, n: int) -> list[dict]:
    from lib import data

    loaded, _ = data.load(paths.resolve_source(source), schema, limit=n)
    return list(loaded["train"] if "train" in loaded else next(iter(loaded.values())))[:n]


def alpaca_labels_check(workdir: str | Path) -> dict:
    """Sabiá on Canarim: a collated batch of the real trainer supervises the completion, ending in `</s>` = id 2,
    nothing after it, and pads with another id (or masks padding)."""
    import datasets

    from lib import prompts, train

    cfg = train.config_for(
        "sabia-canarim", "colab-a100", model=TWINS["sabia-7b"], per_device_batch=4, eval_steps=10**9, save_steps=10**9
    )
    tokenizer = models.load_tokenizer(cfg.model)
    train.prepare_pad_token(tokenizer)
    rows = _sample_rows("data/samples/canarim.jsonl", "canarim", 4)
    examples = train.training_examples(datasets.Dataset.from_list(rows), cfg, tokenizer)
    trainer = train.build_trainer(cfg, examples, None, workdir, tokenizer=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    problems = []
    for i, row in enumerate(rows):
        labels, mask = batch["labels"][i].tolist(), batch["attention_mask"][i].tolist()
        supervised = [k for k, label in enumerate(labels) if label != -100]
        last = supervised[-1] if supervised else None
        if last is None or labels[last] != 2 or tokenizer.eos_token_id != 2:
            problems.append(f"row {i}: last supervised label {labels[last] if last is not None else None}, not 2")
        if any(m for m in mask[(last or 0) + 1 :]) and any(label != -100 for label in labels[(last or 0) + 1 :]):
            problems.append(f"row {i}: tokens after </s> supervised")
        completion_ids = tokenizer(prompts.format_alpaca_pt(row, tokenizer)["completion"], add_special_tokens=False)[
            "input_ids"
        ]
        if completion_ids[-1] != 2:
            problems.append(f"row {i}: the completion text does not end in the EOS id (</s> split into pieces?)")
    pad_ok = tokenizer.pad_token_id != tokenizer.eos_token_id
    return _check(
        "sabia_alpaca_labels_end_in_eos_and_pad_differs",
        not problems and pad_ok,
        {
            "eos_id": tokenizer.eos_token_id,
            "pad_token": tokenizer.pad_token,
            "pad_id": tokenizer.pad_token_id,
            "problems": problems,
        },
    )


def zephyr_template_check(rows: list[dict]) -> dict:
    """Cosmos QA prompts render exactly as Zephyr's own chat template (from its tokenizer_config.json) renders them,
    rendered here independently with jinja2 the way transformers does (trim_blocks, lstrip_blocks), after the `<s>`
    that its model card's tokenization (and its training) puts first (`lib.models.with_bos_in_chat_template`)."""
    import jinja2

    from lib import prompts

    tokenizer = models.load_tokenizer(TWINS["zephyr-7b-beta"])
    config = json.loads(
        (models.REPO_TOKENIZER_FILES / "zephyr-7b-beta" / "tokenizer_config.json").read_text(encoding="utf-8")
    )
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(config["chat_template"])
    differ = []
    for row in rows:
        ours = prompts.render_cosmos(row, tokenizer)
        theirs_prompt = config["bos_token"] + template.render(
            messages=prompts.cosmos_messages(row, with_answer=False),
            add_generation_prompt=True,
            eos_token=config["eos_token"],
        )
        theirs_text = config["bos_token"] + template.render(
            messages=prompts.cosmos_messages(row), eos_token=config["eos_token"]
        )
        if ours["prompt"] != theirs_prompt or ours["text"] != theirs_text:
            differ.append(row["id"])
    return _check("zephyr_prompts_render_as_zephyrs_template", not differ, {"rows": len(rows), "differ": differ})


def letters_check(rows: list[dict]) -> dict:
    from lib import evaluate, prompts

    tokenizer = models.load_tokenizer(TWINS["zephyr-7b-beta"])
    _, ids = evaluate.letter_tokens(tokenizer, prompts.render_cosmos(rows[0], tokenizer)["prompt"])
    return _check(
        "letters_scoring_finds_four_distinct_letter_ids",
        len(set(ids)) == 4,
        {"ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)},
    )


def generate_stops_check() -> list[dict]:
    """Both twins: generation stops on `</s>` (id 2) — the model is made to emit it as its first token."""
    import torch

    from lib import inference, prompts

    out = []
    for real, name in TWINS.items():
        net, tokenizer = inference.load_for_eval(name, quantize_4bit=True)
        force_eos = torch.zeros(net.config.vocab_size)
        force_eos[tokenizer.eos_token_id] = 1e4
        hook = net.lm_head.register_forward_hook(
            lambda module, args, logits, bias=force_eos: logits + bias.to(logits.dtype)
        )
        try:
            prompt = prompts.alpaca_pt_prompt("Diga olá.")
            result = inference.generate(net, tokenizer, [prompt], max_new_tokens=4, plain_text=True)[0]
        finally:
            hook.remove()
        out.append(
            _check(
                f"generate_stops_at_eos[{real}]",
                inference.stop_token_ids(tokenizer) == [2] and result["stopped_by_eos"] and result["new_tokens"] == 1,
                {"stop_ids": inference.stop_token_ids(tokenizer), **result},
            )
        )
    return out


def lm_eval_check(rows: list[dict]) -> list[dict]:
    """The lm-eval tasks (configs/lm_eval) feed Zephyr's tokenizer the same text and ids as notebook 06."""
    from lib import inference, lmeval

    net, tokenizer = inference.load_for_eval(TWINS["zephyr-7b-beta"], quantize_4bit=True)
    lm = lmeval.harness(net, tokenizer)
    folder = paths.SAMPLES / "cosmos_qa_ptbr"
    out = []
    for mode in ("letters", "options"):
        task = lmeval.build_task(mode, str(folder), "validation")
        built = lmeval.requests(lm, task, limit=len(rows))
        compared = lmeval.compare_inputs(lm, tokenizer, rows, built, mode)
        out.append(
            _check(
                f"lm_eval_renders_notebook_06_ids[{mode}]",
                compared["prompts_identical"]
                and compared["token_ids_identical"]
                and not compared["scored_token_mismatches"],
                compared,
            )
        )
    return out


def checks(workdir: str | Path) -> list[dict]:
    from lib import data

    loaded, _ = data.load(paths.SAMPLES / "cosmos_qa_ptbr", "cosmos_qa_pt", splits=["validation"])
    rows = list(loaded["validation"])[:8]
    return [
        alpaca_labels_check(workdir),
        zephyr_template_check(rows),
        letters_check(rows),
        *generate_stops_check(),
        *lm_eval_check(rows),
    ]


# ---------------------------------------------------------------- the report


def token_lengths(results_dir: str | Path) -> dict:
    """Per split, rows longer than the full profile's max_length under the real tokenizers (02, 03): the share the
    real run drops (lib.train.drop_overlong) or, at evaluation, truncates."""
    results_dir = Path(results_dir)
    out = {}
    for notebook, names in (
        ("02_format_canarim_prompts", None),
        ("03_format_cosmos_qa_prompts", "cosmos_qa_ptbr_chat"),
    ):
        metrics = json.loads((results_dir / notebook / "metrics.json").read_text(encoding="utf-8"))
        stats = metrics["token_lengths"] if names is None else metrics["token_lengths"][names]
        out[metrics["model"]] = {
            split: {k: s.get(k) for k in ("n", "max_length", "n_over_max_length", "p95", "max")}
            for split, s in stats.items()
        }
    return out


def report(results_dir: str | Path, replacements: list[dict]) -> dict:
    """What the rehearsal ran with and found: replacements of the full profile, CPU substitutions of training,
    tokenizer parity, token lengths, and the checks (`ok` is their conjunction)."""
    results_dir = Path(results_dir)
    substitutions = {}
    for notebook in ("04_qlora_canarim", "05_qlora_cosmos_qa"):
        metrics = json.loads((results_dir / notebook / "metrics.json").read_text(encoding="utf-8"))
        substitutions[notebook] = metrics.get("cpu_substitutions", [])
    parity = write_tokenizers_report(results_dir / "tokenizers.json")["presets"]
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as workdir:
        found = checks(workdir)
    found += [
        _check(
            f"tokenizer_parity[{p['preset']}]",
            p["matched"] == p["reference_strings"],
            {k: p[k] for k in ("matched", "reference_strings", "mismatched")},
        )
        for p in parity
    ]
    return {
        "replaced": replacements,
        "cpu_substitutions": substitutions,
        "evaluation_substitutions": [
            {
                "setting": "4-bit matmul",
                "gpu": "bitsandbytes CUDA kernels, bf16 compute",
                "here": "NF4 dequantized to fp32, fp32 matmul",
            }
        ],
        "tokenizers": {
            p["preset"]: {k: p[k] for k in ("route", "reference_strings", "matched", "default_route_matched")}
            for p in parity
        },
        "token_lengths": token_lengths(results_dir),
        "checks": found,
        "ok": all(c["ok"] for c in found),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tokenizer parity of the 7B presets (their twins) -> tokenizers.json")
    parser.add_argument("--out", default=str(paths.RESULTS / "rehearsal" / "tokenizers.json"))
    args = parser.parse_args(argv)
    for row in write_tokenizers_report(args.out)["presets"]:
        print(
            f"{row['preset']}: {row['matched']}/{row['reference_strings']} published id sequences, "
            f"{row['sentencepiece_matched']}/{row['sentencepiece_texts']} texts as SentencePiece encodes them "
            f"(transformers' default route: {row['default_route_matched']}, "
            f"{row['default_route_sentencepiece_matched']}) — {row['route']}"
        )


if __name__ == "__main__":
    main()
