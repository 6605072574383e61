"""Where things live in the repository; everything else derives from these paths."""

from __future__ import annotations

import os
import re
from pathlib import Path, PureWindowsPath

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SAMPLES = DATA / "samples"
PROCESSED = DATA / "processed"
# Converted embedded models (~1.6 GB); overridable so several clones can share one cache.
MODELS = Path(os.environ.get("PTLLM_MODELS_DIR", DATA / "models"))
NOTEBOOKS = ROOT / "notebooks"
# Overridable so the test suite can run documented commands without touching the committed results.
RESULTS = Path(os.environ.get("PTLLM_RESULTS_DIR", ROOT / "results"))


def output_dir(path: str | Path) -> Path:
    """A notebook's artifact folder (normally `results/<profile>/<notebook-stem>/`), created on demand."""
    path = Path(path)
    path = path if path.is_absolute() else ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def relative(path: str | Path) -> str:
    """`path` relative to the repo root when it lies inside it (committed results must not name one machine)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT)) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")
OUTSIDE = "<outside the repository>"


def portable(path: str | Path | None, **anchors: str | Path | None) -> str | None:
    """How a path is written into anything the repo commits or publishes (metrics.json, training_summary.json,
    pipeline.json, model and dataset cards): relative to the repository root when inside it; inside a folder the
    caller names (`persist_dir=...`, `output_dir=...`) as `<that name>/<the rest>`; anywhere else only its last
    part, `<outside the repository>/<name>`. Never absolute, so never a home, temp or Drive folder. A relative path
    or a Hub id is kept as written."""
    if path is None:
        return None
    text = str(path)
    if _WINDOWS_ABSOLUTE.match(text):
        return f"{OUTSIDE}/{PureWindowsPath(text).name}"
    path = Path(text).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    path = path.resolve()
    for name, anchor in {"": ROOT, **anchors}.items():
        if anchor is None:
            continue
        try:
            rest = path.relative_to(Path(anchor).expanduser().resolve()).as_posix()
        except ValueError:
            continue
        return (f"{name}/{rest}" if rest != "." else name) if name else rest
    return f"{OUTSIDE}/{path.name}"


# An absolute machine path in text: a POSIX path from the root into a home, temp, Colab, Drive or mount folder, a
# Windows drive path (also as JSON writes it, with doubled backslashes), or a home-relative `~/` path.
MACHINE_PATH = re.compile(
    r"(?<![\w.:/-])(?:/(?:home|root|tmp|var/folders|private|content|Users|mnt|media|drive|gdrive|work|workspace|opt|srv|"
    r"data|scratch)(?=/)[^\s\"'`<>)]*|[A-Za-z]:(?:\\\\|\\)(?=[\w .-])[^\s\"'`<>)]*|~/[^\s\"'`<>)]*)"
)


def machine_paths(text: str) -> list[str]:
    """Absolute machine paths in `text` (see MACHINE_PATH), plus this machine's own repo, home and temp folders."""
    found = MACHINE_PATH.findall(text)
    import tempfile

    for own in {str(ROOT), str(Path.home()), tempfile.gettempdir()}:
        if len(own) > 1 and own in text:
            found.append(own)
    return found


def resolve_source(source: str) -> str:
    """A repo-relative path (e.g. `data/samples/x.jsonl`) becomes absolute; anything else (a Hub id) is kept."""
    candidate = ROOT / source
    return str(candidate) if candidate.exists() else source


def persist_path(persist_dir: str | Path | None, profile: str, notebook: str, what: str) -> Path | None:
    """Where a notebook keeps `what` (results, adapter checkpoints, translation cache) under `persist_dir`, e.g. a
    Google Drive folder: `<persist_dir>/<profile>/<notebook>/<what>`; None when nothing is persisted."""
    return Path(persist_dir) / profile / notebook / what if persist_dir else None


def mirror(src: str | Path, dst: str | Path) -> Path:
    """Copy folder `src` to `dst` so that `dst` is always whole: copied beside it under a temporary name, then put in
    place by renames (a runtime lost mid-copy leaves the previous `dst`, or none, never half of one)."""
    import shutil

    src, dst = Path(src), Path(dst)
    staging, old = dst.with_name(f".{dst.name}.partial"), dst.with_name(f".{dst.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    staging.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def write_json(obj, path: str | Path) -> Path:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# What every committed metrics.json must say about where its numbers came from (null = not applicable, e.g. no
# adapter for a base model, no seed for greedy decoding); tests/test_results.py checks the committed files.
PROVENANCE = ("notebook", "profile", "data", "split", "model", "adapter", "seed")


def machine() -> dict:
    """The CPU (and GPU) a result was computed on and the instruction-set level torch's kernels used, so that a
    figure that moves from one machine to another can be traced (results/README.md says how much it may move)."""
    import platform

    import torch

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        lines = info.splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    except OSError:  # not Linux
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}),
        "cpu_4bit_kernel": "fp32 (lib.models.one_cpu_4bit_kernel_path)",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


PATH_KEYS = ("data", "adapter", "source", "train_data", "sample_data", "reference")  # written through portable()


def write_metrics(metrics: dict, path: str | Path) -> Path:
    missing = [k for k in PROVENANCE if k not in metrics]
    if missing:
        raise ValueError(f"{path}: metrics lack the provenance keys {missing} (see lib.paths.PROVENANCE)")
    portable_paths = {k: portable(v) for k, v in metrics.items() if k in PATH_KEYS and isinstance(v, (str, Path))}
    return write_json({**metrics, **portable_paths, "machine": metrics.get("machine") or machine()}, path)
