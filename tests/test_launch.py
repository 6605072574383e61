"""Multi-GPU launch (lib.launch, configs/accelerate/): configs parse with accelerate's own loader, the generated
command is what `accelerate launch` and lib.train understand, the effective batch is kept, bad inputs fail, and
lib.models places the model per process. CPU only: no GPU is needed, and no model is loaded."""

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from lib import launch, models, train

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the accelerate configs


def _load(strategy):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(launch.config_file(strategy)))  # accelerate's own loader and key check
    assert isinstance(config, ClusterConfig)
    return config


def test_ddp_config_is_single_machine_multi_gpu():
    from accelerate.utils import DistributedType

    config = _load("ddp")
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_machines == 1 and config.use_cpu is False and config.fsdp_config == {}


def test_fsdp_config_has_what_qlora_needs():
    from accelerate.utils import DistributedType

    config = _load("fsdp")
    fsdp = config.fsdp_config
    assert config.distributed_type == DistributedType.FSDP and config.num_machines == 1
    assert fsdp["fsdp_version"] == 1  # FSDP2 does not shard bitsandbytes 4-bit weights correctly yet
    assert fsdp["fsdp_use_orig_params"] is False
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True and fsdp["fsdp_sync_module_states"] is True
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # else trainer.save_model writes no adapter
    assert fsdp["fsdp_activation_checkpointing"] is False  # lib.train's gradient checkpointing does it
    assert fsdp["fsdp_offload_params"] is False


def test_every_strategy_has_a_config_file():
    for strategy, relative in launch.CONFIGS.items():
        assert (ROOT / relative).is_file() and launch.config_file(strategy) == ROOT / relative
        assert yaml.safe_load((ROOT / relative).read_text())["compute_environment"] == "LOCAL_MACHINE"


# ---------------------------------------------------------------- the command


def _accelerate_args(argv):
    """argv as `accelerate launch` parses and completes it from the config file (no process started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert argv[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(argv[2:])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_command_is_understood_by_accelerate_launch(strategy, monkeypatch):
    monkeypatch.chdir(ROOT)  # the command uses the repo-relative config path
    argv = launch.launch_command("zephyr-cosmosqa", "smoke", "runs/x", 2, strategy)
    assert argv[:4] == ["accelerate", "launch", "--config_file", launch.CONFIGS[strategy]]
    args, defaults = _accelerate_args(argv)
    assert args.config_file == launch.CONFIGS[strategy] and args.num_processes == 2
    assert args.module and args.training_script == "lib.train"
    assert args.training_script_args[:6] == [
        "--preset",
        "zephyr-cosmosqa",
        "--hardware",
        "smoke",
        "--output-dir",
        "runs/x",
    ]
    assert (args.multi_gpu, args.use_fsdp) == ((True, False) if strategy == "ddp" else (False, True))


def test_fsdp_launch_exports_the_qlora_settings(monkeypatch):
    from accelerate.utils.launch import prepare_multi_gpu_env

    monkeypatch.chdir(ROOT)
    args, _ = _accelerate_args(launch.launch_command("zephyr-cosmosqa", "smoke", "runs/x", 4, "fsdp"))
    env = prepare_multi_gpu_env(args)  # what every training process gets
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "1"
    assert env["FSDP_USE_ORIG_PARAMS"] == "false" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    assert env["FSDP_SYNC_MODULE_STATES"] == "true" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert args.nproc_per_node == "4"


def test_single_gpu_is_the_plain_train_command():
    argv = launch.launch_command("zephyr-cosmosqa", "rtx3090", "runs/z", 1, "ddp", ["--max-steps", "5"])
    assert argv == [
        "python",
        "-m",
        "lib.train",
        "--preset",
        "zephyr-cosmosqa",
        "--hardware",
        "rtx3090",
        "--output-dir",
        "runs/z",
        "--max-steps",
        "5",
    ]
    assert launch.launch_command("zephyr-cosmosqa", "rtx3090", "runs/z", 1, "fsdp") == argv[:-2]


def test_shell_line_round_trips_with_spaces_and_quotes():
    out = "results/full/05 qlora/it's adapter"
    argv = launch.launch_command("zephyr-cosmosqa", "rtx3090", out, 2, "ddp", ["--source", "my data/x y.jsonl"])
    line = launch.format_command(argv)
    assert shlex.split(line) == argv
    assert argv[argv.index("--output-dir") + 1] == out


def test_extra_args_are_passed_on_and_checked():
    argv = launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "ddp", ["--max-steps", "50", "--save-steps=10"])
    assert argv[-3:] == ["--max-steps", "50", "--save-steps=10"]
    with pytest.raises(ValueError, match="--no-such-flag"):
        launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "ddp", ["--no-such-flag", "1"])
    with pytest.raises(ValueError, match="--output-dir"):
        launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "ddp", ["--output-dir", "elsewhere"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_gpus=0), "num_gpus"),
        (dict(num_gpus=-2), "num_gpus"),
        (dict(num_gpus=2.0), "num_gpus"),
        (dict(num_gpus=True), "num_gpus"),
        (dict(strategy="deepspeed"), "unknown strategy"),
        (dict(strategy="DDP"), "unknown strategy"),
        (dict(preset="llama-70b"), "unknown preset"),
        (dict(hardware="h100"), "unknown hardware"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    call = dict(preset="zephyr-cosmosqa", hardware="rtx3090", output_dir="o", num_gpus=2, strategy="ddp") | kwargs
    with pytest.raises(ValueError, match=match):
        launch.launch_command(**call)


def test_cli_prints_the_command(capsys):
    launch.main(
        [
            "--preset",
            "zephyr-cosmosqa",
            "--hardware",
            "rtx3090",
            "--gpus",
            "2",
            "--strategy",
            "ddp",
            "--output-dir",
            "results/full/05/adapter",
        ]
    )
    out, err = capsys.readouterr()
    assert shlex.split(out.strip()) == launch.launch_command(
        "zephyr-cosmosqa", "rtx3090", "results/full/05/adapter", 2, "ddp"
    )
    assert "effective batch 32" in err


def test_cli_reports_bad_input_as_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--preset", "zephyr-cosmosqa", "--hardware", "rtx3090", "--gpus", "0", "--output-dir", "o"])
    assert exit_info.value.code == 2 and "num_gpus" in capsys.readouterr().err


def test_executable_uses_this_environment():
    resolved = launch.executable(["accelerate", "launch", "--num_processes", "2", "-m", "lib.train"])
    assert resolved[-4:] == ["--num_processes", "2", "-m", "lib.train"]
    assert launch.executable(["python", "-m", "lib.train"])[0] == sys.executable


# ---------------------------------------------------------------- the effective batch


def _train_config_from(argv, monkeypatch):
    """The TrainConfig lib.train builds in each process from the command's arguments (training stubbed out)."""
    seen = {}

    def fake_train(cfg, output_dir, source=None, merge=False, **persistence):
        seen["cfg"] = cfg
        return {"global_step": 0, "resumed_from": None, "trainable_parameters": 0}

    monkeypatch.setattr(train, "train", fake_train)
    train.main(argv[argv.index("lib.train") + 1 :])
    return seen["cfg"]


@pytest.mark.parametrize(
    "preset, hardware",
    [
        ("zephyr-cosmosqa", "rtx3090"),
        ("zephyr-cosmosqa", "colab-a100"),
        ("sabia-canarim", "rtx3090"),
        ("sabia-canarim", "colab-a100"),
        ("zephyr-cosmosqa-v2", "smoke"),
    ],
)
@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_effective_batch_is_the_presets_on_any_gpu_count(preset, hardware, gpus, monkeypatch, capsys):
    single = train.config_for(preset, hardware)
    argv = launch.launch_command(preset, hardware, "o", gpus, "ddp")
    cfg = _train_config_from(argv, monkeypatch)  # also proves lib.train accepts every generated flag
    assert cfg.per_device_batch * cfg.grad_accum * gpus == single.batch_size
    assert cfg.per_device_batch <= single.per_device_batch  # never more memory per GPU than on one GPU
    plan = launch.batch_plan(preset, hardware, gpus)
    assert (plan["per_device_batch"], plan["grad_accum"], plan["effective_batch"]) == (
        cfg.per_device_batch,
        cfg.grad_accum,
        single.batch_size,
    )


def test_batch_split_examples():
    assert launch.split_batch(32, 4, 2) == (16, 4)  # zephyr on 2x RTX 3090: 4 x 4 x 2
    assert launch.split_batch(32, 32, 4) == (8, 8)  # zephyr on 4x A100: 8 x 1 x 4
    assert launch.split_batch(8, 4, 4) == (2, 2)  # sabia on 4x RTX 3090: micro-batch shrinks to 2
    assert launch.split_batch(24, 8, 2) == (12, 6)  # micro-batch: largest divisor of 12 that is <= 8
    with pytest.raises(ValueError, match="split evenly"):
        launch.split_batch(8, 4, 3)
    with pytest.raises(ValueError, match="split evenly"):
        launch.split_batch(8, 4, 16)


def test_global_batch_override_is_split_too(monkeypatch, capsys):
    argv = launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 4, "ddp", ["--batch-size", "64"])
    assert argv.count("--batch-size") == 1 and argv[argv.index("--batch-size") + 1] == "16"
    cfg = _train_config_from(argv, monkeypatch)
    assert cfg.per_device_batch * cfg.grad_accum * 4 == 64


# ---------------------------------------------------------------- FSDP and the optimizer


def test_fsdp_never_keeps_a_bitsandbytes_optimizer():
    """Paged / 8-bit optimizers cannot save an FSDP checkpoint: switched to torch AdamW, or refused up front."""
    if "--optimizer" in launch.train_cli_options():
        argv = launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "fsdp")
        assert argv[argv.index("--optimizer") + 1] == launch.FSDP_OPTIMIZER
    else:
        with pytest.raises(ValueError, match="--optimizer"):
            launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "fsdp")
    smoke = launch.launch_command("zephyr-cosmosqa", "smoke", "o", 2, "fsdp")  # adamw_torch already
    assert "--optimizer" not in smoke
    assert "--optimizer" not in launch.launch_command("zephyr-cosmosqa", "rtx3090", "o", 2, "ddp")


# ---------------------------------------------------------------- lib.models under a launcher


def _clear_launcher_env(monkeypatch):
    for name in ("WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(name, raising=False)


def test_distributed_strategy_reads_the_launcher_environment(monkeypatch):
    _clear_launcher_env(monkeypatch)
    assert models.distributed_strategy() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert models.distributed_strategy() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert models.distributed_strategy() == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert models.distributed_strategy() == "fsdp"


def _load_kwargs(monkeypatch, gpu: bool):
    """The kwargs load_model passes to from_pretrained (nothing is loaded)."""
    from transformers import AutoModelForCausalLM

    seen = {}
    monkeypatch.setattr(models, "resolve", lambda model: ("some/model", {}))
    monkeypatch.setattr(
        AutoModelForCausalLM,
        "from_pretrained",
        classmethod(lambda cls, name, **kw: seen.update(kw) or torch.nn.Module()),
    )
    if gpu:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: seen.setdefault("set_device", device))
    models.load_model("some/model", quantize_4bit=True)
    return seen


@pytest.mark.parametrize("gpu", [False, True])
def test_single_process_loading_is_unchanged(gpu, monkeypatch):
    _clear_launcher_env(monkeypatch)
    kw = _load_kwargs(monkeypatch, gpu)
    assert kw["device_map"] == ("auto" if gpu else "cpu") and "set_device" not in kw
    assert kw["dtype"] == (torch.bfloat16 if gpu else torch.float32)
    assert kw["quantization_config"].bnb_4bit_quant_storage == torch.uint8  # bitsandbytes' default


def test_ddp_process_loads_the_whole_model_on_its_own_gpu(monkeypatch):
    _clear_launcher_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    kw = _load_kwargs(monkeypatch, gpu=True)
    assert kw["device_map"] == {"": 3} and kw["set_device"] == 3
    assert kw["quantization_config"].bnb_4bit_quant_storage == torch.uint8 and kw["dtype"] == torch.bfloat16


def test_fsdp_process_stores_4bit_weights_in_a_shardable_float_dtype(monkeypatch):
    _clear_launcher_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    kw = _load_kwargs(monkeypatch, gpu=True)
    config = kw["quantization_config"]
    assert kw["device_map"] == {"": 1}
    assert config.bnb_4bit_quant_storage == models.FSDP_QUANT_STORAGE == kw["dtype"]
    assert config.bnb_4bit_quant_storage.is_floating_point
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant


# ---------------------------------------------------------------- a real 2-process launch on CPU

PROBE = """
import json, os, sys
import torch.distributed as dist
from lib import models, train

def fake_train(cfg, output_dir, source=None, merge=False, **persistence):
    dist.init_process_group("gloo")
    probe = {"rank": dist.get_rank(), "world": dist.get_world_size(), "strategy": models.distributed_strategy(),
             "local_rank": models.local_rank(), "per_device_batch": cfg.per_device_batch,
             "grad_accum": cfg.grad_accum, "output_dir": output_dir}
    with open(os.path.join(os.environ["PROBE_DIR"], f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump(probe, f)
    dist.destroy_process_group()
    return {"global_step": 0, "resumed_from": None, "trainable_parameters": 0}

train.train = fake_train
train.main(sys.argv[1:])
"""


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.slow
def test_generated_command_starts_two_processes_on_cpu(strategy, tmp_path):
    """`accelerate launch` with our config (use_cpu flipped on, as no GPU is here) starts 2 lib.train processes that
    see the launcher's environment and build the per-process batch; training itself is stubbed out (~10 s)."""
    cpu_config = tmp_path / "cpu.yaml"
    cpu_config.write_text(launch.config_file(strategy).read_text().replace("use_cpu: false", "use_cpu: true"))
    (tmp_path / "probe_train.py").write_text(textwrap.dedent(PROBE))
    argv = launch.launch_command("zephyr-cosmosqa", "smoke", "out dir/a", 2, strategy)
    argv[argv.index("--config_file") + 1] = str(cpu_config)
    argv[argv.index("lib.train")] = "probe_train"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PROBE_DIR": str(tmp_path),
    }
    result = subprocess.run(launch.executable(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probes = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert [p["rank"] for p in probes] == [0, 1] and {p["world"] for p in probes} == {2}
    assert {p["strategy"] for p in probes} == {strategy} and [p["local_rank"] for p in probes] == [0, 1]
    assert {(p["per_device_batch"] * p["grad_accum"]) for p in probes} == {4}  # 8 = 4 per process x 2
    assert {p["output_dir"] for p in probes} == {"out dir/a"}
