"""Multi-GPU QLoRA: the `accelerate launch` command for `lib.train`, data-parallel (DDP) or sharded (FSDP).

Same presets, same effective batch: with N GPUs each process gets `--batch-size B/N` (lib.train's `--batch-size` is
the batch of *one process*, micro-batch x accumulation) and a micro-batch that divides it, so
micro-batch x accumulation x N == the preset's batch B and the optimizer takes the same steps as on one GPU.

    python -m lib.launch --preset zephyr-cosmosqa --hardware rtx3090 --gpus 2 --strategy ddp \\
        --output-dir runs/zephyr              # prints the command; add --run to execute it; rerun to resume

Any other flag (`--max-steps 50`, `--source ...`) is passed on to lib.train. Run from the repository root.
Why DDP or FSDP, and the caveats: docs/multi_gpu.md. The accelerate configs: configs/accelerate/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from lib import paths

CONFIGS = {  # strategy -> accelerate config, relative to the repository root
    "ddp": "configs/accelerate/ddp.yaml",
    "fsdp": "configs/accelerate/fsdp_qlora.yaml",
}
# bitsandbytes' 8-bit optimizers cannot save an FSDP checkpoint (optimizer state dict; PEFT FSDP guide, caveats;
# bitsandbytes#89) and the paged 32-bit one is untested there, so FSDP runs use torch's AdamW instead.
FSDP_OPTIMIZER = "adamw_torch"
_MANAGED = ("--preset", "--hardware", "--output-dir")  # set by launch_command itself


def config_file(strategy: str) -> Path:
    """Absolute path of the accelerate config of a strategy."""
    _check_strategy(strategy)
    return paths.ROOT / CONFIGS[strategy]


def _check_strategy(strategy: str) -> None:
    if strategy not in CONFIGS:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(CONFIGS)} (see docs/multi_gpu.md)")


def _check_gpus(num_gpus) -> int:
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"num_gpus must be an integer >= 1, got {num_gpus!r}")
    return num_gpus


def split_batch(batch_size: int, per_device_batch: int, num_gpus: int) -> tuple[int, int]:
    """(batch per process, micro-batch per GPU) with micro x accumulation x num_gpus == batch_size exactly.

    The micro-batch is the largest divisor of the per-process batch not above `per_device_batch` (the hardware's
    memory-safe micro-batch), so more GPUs never raise the memory per GPU.
    """
    _check_gpus(num_gpus)
    if batch_size < 1 or per_device_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, got batch_size={batch_size}, per_device_batch={per_device_batch}")
    if batch_size % num_gpus:
        raise ValueError(
            f"effective batch {batch_size} cannot be split evenly over {num_gpus} GPUs; use a GPU count "
            f"that divides it, or pass --batch-size with a multiple of {num_gpus}"
        )
    per_process = batch_size // num_gpus
    micro = min(per_device_batch, per_process)
    while per_process % micro:
        micro -= 1
    return per_process, micro


def batch_plan(
    preset: str, hardware: str, num_gpus: int, batch_size: int | None = None, per_device_batch: int | None = None
) -> dict:
    """How the preset's effective batch is kept on `num_gpus` GPUs (validates preset and hardware)."""
    from lib import train

    cfg = train.config_for(preset, hardware, batch_size=batch_size, per_device_batch=per_device_batch)
    per_process, micro = split_batch(cfg.batch_size, cfg.per_device_batch, num_gpus)
    accum = per_process // micro
    return {
        "num_gpus": num_gpus,
        "batch_size": cfg.batch_size,
        "per_process_batch": per_process,
        "per_device_batch": micro,
        "grad_accum": accum,
        "effective_batch": micro * accum * num_gpus,
        "optimizer": cfg.optimizer,
    }


@functools.lru_cache(maxsize=1)
def train_cli_options() -> frozenset[str]:
    """The `--flags` lib.train's command line accepts (read from its --help, so it follows lib.train's argparse)."""
    from lib import train

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        train.main(["--help"])
    return frozenset(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", out.getvalue()))


def _flag_value(args: list[str], flag: str) -> tuple[str | None, list[str]]:
    """(value of `flag` in args, args without it); accepts `--flag V` and `--flag=V`."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == flag:
            if i + 1 >= len(args):
                raise ValueError(f"{flag} needs a value")
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _int_flag(args: list[str], flag: str) -> tuple[int | None, list[str]]:
    value, rest = _flag_value(args, flag)
    if value is None:
        return None, rest
    try:
        return int(value), rest
    except ValueError:
        raise ValueError(f"{flag} must be an integer, got {value!r}") from None


def _is_bnb_optimizer(name: str) -> bool:
    return "8bit" in name or "paged" in name or "bnb" in name


def launch_command(
    preset: str,
    hardware: str,
    output_dir: str | Path,
    num_gpus: int,
    strategy: str = "ddp",
    extra_args: list[str] | None = None,
) -> list[str]:
    """argv that trains `preset` on `num_gpus` GPUs of one machine; rerunning it resumes from the last checkpoint.

    `num_gpus == 1` gives the plain single-process `python -m lib.train ...` (no launcher). Otherwise
    `accelerate launch --config_file configs/accelerate/<strategy>.yaml --num_processes N -m lib.train ...` with
    `--batch-size`/`--per-device-batch` per process (see `split_batch`). `extra_args` go to lib.train; a
    `--batch-size` / `--per-device-batch` among them means the *global* effective batch / the largest micro-batch.
    Raises ValueError on a bad GPU count, strategy, preset, hardware, unknown lib.train flag, or a batch that cannot
    be split evenly.
    """
    _check_strategy(strategy)
    _check_gpus(num_gpus)
    extra = [str(a) for a in (extra_args or [])]
    for flag in _MANAGED:
        if any(a == flag or a.startswith(flag + "=") for a in extra):
            raise ValueError(f"{flag} is set by launch_command's own argument; remove it from extra_args")
    known = train_cli_options()
    for arg in extra:
        if arg.startswith("--") and arg.split("=", 1)[0] not in known:
            raise ValueError(f"lib.train does not accept {arg.split('=', 1)[0]!r}; it accepts {sorted(known)}")
    batch_size, extra = _int_flag(extra, "--batch-size")
    per_device, extra = _int_flag(extra, "--per-device-batch")
    plan = batch_plan(preset, hardware, num_gpus, batch_size=batch_size, per_device_batch=per_device)
    train_args = ["--preset", preset, "--hardware", hardware, "--output-dir", str(output_dir)]
    if num_gpus == 1:
        for flag, value in (("--batch-size", batch_size), ("--per-device-batch", per_device)):
            if value is not None:
                train_args += [flag, str(value)]
        return ["python", "-m", "lib.train", *train_args, *extra]
    train_args += ["--batch-size", str(plan["per_process_batch"]), "--per-device-batch", str(plan["per_device_batch"])]
    has_optimizer = any(a == "--optimizer" or a.startswith("--optimizer=") for a in extra)
    if strategy == "fsdp" and not has_optimizer and _is_bnb_optimizer(plan["optimizer"]):
        if "--optimizer" not in known:
            raise ValueError(
                f"FSDP cannot checkpoint the bitsandbytes optimizer {plan['optimizer']!r} of {preset}/{hardware}, and "
                f"lib.train has no --optimizer flag to switch to {FSDP_OPTIMIZER!r}; use --strategy ddp "
                f"(docs/multi_gpu.md, 'Open items in lib.train', has the one-line change)"
            )
        train_args += ["--optimizer", FSDP_OPTIMIZER]
    return [
        "accelerate",
        "launch",
        "--config_file",
        CONFIGS[strategy],
        "--num_processes",
        str(num_gpus),
        "-m",
        "lib.train",
        *train_args,
        *extra,
    ]


def format_command(argv: list[str]) -> str:
    """The command as one shell line (quoted where needed; `shlex.split` gives argv back)."""
    return shlex.join(argv)


def executable(argv: list[str]) -> list[str]:
    """argv with `python` / `accelerate` resolved to this interpreter's environment, for running it from here."""
    head, rest = argv[0], argv[1:]
    if head == "python":
        return [sys.executable, *rest]
    if head == "accelerate":
        script = Path(sys.executable).with_name("accelerate")
        if script.exists():
            return [str(script), *rest]
        if shutil.which("accelerate"):
            return argv
        return [sys.executable, "-m", "accelerate.commands.launch", *rest[1:]]  # rest[0] == "launch"
    return argv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Print (or --run) the multi-GPU `accelerate launch` command of a lib.train preset. "
        "Unknown flags are passed on to lib.train.",
        allow_abbrev=False,
    )
    parser.add_argument("--preset", required=True)
    parser.add_argument("--hardware", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--gpus", type=int, help="number of GPUs (default: all visible ones)")
    parser.add_argument("--strategy", default="ddp", choices=sorted(CONFIGS))
    parser.add_argument("--run", action="store_true", help="execute the command instead of only printing it")
    args, extra = parser.parse_known_args(argv)
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            parser.error("no GPU visible; pass --gpus N to print the command for another machine")
    try:
        command = launch_command(args.preset, args.hardware, args.output_dir, gpus, args.strategy, extra)
        plan = batch_plan(
            args.preset,
            args.hardware,
            gpus,
            batch_size=_int_flag(extra, "--batch-size")[0],
            per_device_batch=_int_flag(extra, "--per-device-batch")[0],
        )
    except ValueError as error:
        parser.error(str(error))
    print(
        f"# {gpus} GPU(s), {args.strategy if gpus > 1 else 'single process'}: micro-batch "
        f"{plan['per_device_batch']} x accumulation {plan['grad_accum']} x {gpus} GPU(s) = effective batch "
        f"{plan['effective_batch']}",
        file=sys.stderr,
    )
    print(format_command(command), flush=True)
    if args.run:
        if Path.cwd().resolve() != paths.ROOT:
            parser.error(f"--run must be started from the repository root ({paths.ROOT})")
        resolved = executable(command)
        os.execvp(resolved[0], resolved)


if __name__ == "__main__":
    main()
