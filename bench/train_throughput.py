"""Benchmark: training tokens/s and useful-token fraction, our batching vs the prior configuration.

Useful-token fraction is measured over one whole epoch of batches; tokens/s over `--steps` timed training steps.
Ours: batches of similar lengths (`group_by_length`) padded only to the longest example of the batch. Prior work:
every sequence padded to `max_length`. Same data (the Canarim sample, Alpaca-PT), same model (embedded-small in
4-bit + LoRA, fp32 compute on CPU), same number of steps, one run. Prints the ratios (targets: useful fraction
>= 0.95, tokens/s >= 2x) and writes results/<profile>/bench/train_throughput.json.
Run: .venv/bin/python bench/train_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import models, paths, train  # noqa: E402


def measure(cfg, examples, tokenizer, pad_to_max: bool, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = train.build_trainer(cfg, examples, None, tmp, pad_to_max=pad_to_max, tokenizer=tokenizer)
        counter = trainer.data_collator
        for _ in trainer.get_train_dataloader():  # one whole epoch of batches, collated only: the padding share
            pass
        epoch_useful = counter.useful_fraction
        counter.real = counter.total = 0
        trainer.args.max_steps = steps
        trainer.args.save_strategy = "no"
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {
        "pad_to_max_length": pad_to_max,
        "steps": steps,
        "seconds": round(seconds, 2),
        "real_tokens": counter.real,
        "processed_tokens": counter.total,
        "useful_fraction": round(epoch_useful, 4),
        "useful_fraction_timed_steps": round(counter.useful_fraction, 4),
        "real_tokens_per_s": round(counter.real / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--model", default="embedded-small")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512, help="the prior work padded to 2048; 512 is kinder")
    args = parser.parse_args()
    cfg = train.config_for(
        "sabia-canarim",
        "smoke",
        model=args.model,
        max_length=args.max_length,
        batch_size=8,
        per_device_batch=8,
        validation_rows=16,
    )
    splits, _ = train.load_task_data(cfg)
    tokenizer = models.load_tokenizer(cfg.model)
    train.prepare_pad_token(tokenizer)
    examples, _ = train.drop_overlong(
        train.training_examples(splits["train"], cfg, tokenizer), tokenizer, cfg.max_length
    )
    prior = measure(cfg, examples, tokenizer, pad_to_max=True, steps=args.steps)
    ours = measure(cfg, examples, tokenizer, pad_to_max=False, steps=args.steps)
    ratio = ours["real_tokens_per_s"] / prior["real_tokens_per_s"]
    result = {
        "name": "train_throughput",
        "ratio": round(ratio, 2),
        "target": 2.0,
        "useful_fraction": ours["useful_fraction"],
        "target_useful_fraction": 0.95,
        "met": ratio >= 2.0 and ours["useful_fraction"] >= 0.95,
        "model": args.model,
        "max_length": args.max_length,
        "ours": ours,
        "prior_pad_to_max": prior,
    }
    out = paths.write_json(result, paths.RESULTS / args.profile / "bench" / "train_throughput.json")
    print(
        f"useful tokens: ours {ours['useful_fraction']:.1%} vs prior {prior['useful_fraction']:.1%} (target >= 95%) | "
        f"real tokens/s: ours {ours['real_tokens_per_s']} vs prior {prior['real_tokens_per_s']} -> {ratio:.1f}x "
        f"(target >= 2x) -> {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
