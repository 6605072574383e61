"""Run the numbered notebooks with papermill: `python -m lib.pipeline [--profile smoke] [--only 02 03] [-p k v]`.

Profiles (the one place that says which model and data each notebook uses per profile):
- `smoke`: embedded model on CPU, shipped samples and synthetic data; minutes. The default.
- `full`: the real 7B models and Hub datasets (Colab Pro / RTX 3090).
Executed copies go to `results/<profile>/notebooks/`, artifacts to `results/<profile>/<notebook-stem>/`, the timing
of a whole-chain run to `results/<profile>/pipeline.json`. `--dry-run` prints what would run, with which parameters.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

from lib import paths

PROFILES: dict[str, dict[str, dict]] = {
    # notebook-number -> parameter overrides; notebook defaults are already the smoke settings
    "smoke": {  # notebook defaults are the smoke settings; evaluate the adapters that 04 and 05 trained
        "06": {"adapter": "{results}/05_qlora_cosmos_qa/adapter/final_adapter"},
        "07": {"adapter": "{results}/04_qlora_canarim/adapter/final_adapter"},
        "08": {"adapter": "{results}/04_qlora_canarim/adapter/final_adapter"},
    },
    "full": {  # real models; adapters from 04/05 are evaluated by passing -p adapter PATH to 06/07
        "01": {"source": "allenai/cosmos_qa", "backend": "openai", "model": "gpt-4o-mini", "limit": None,
               "workers": 16, "max_retries": 5, "max_new_tokens": None},
        "02": {"model": "sabia-7b", "source": "dominguesm/Canarim-Instruct-PTBR-Dataset", "limit": 28_500,
               "max_length": 2048},
        "08": {"model": "sabia-7b"},  # chat with the 04 adapter: add -p adapter PATH
        "03": {"model": "zephyr-7b-beta", "source": "heloisy/cosmos_qa_ptbr", "limit": None, "max_length": 512},
    },
}


def notebooks(only: list[str] | None = None, folder: Path = paths.NOTEBOOKS) -> list[Path]:
    """Numbered notebooks in run order; `only` selects by number prefix or stem."""
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if p.stem[:2] in only or p.stem in only]
    return found


def parameters_for(notebook: Path, profile: str, overrides: dict | None = None,
                   results_root: Path = paths.RESULTS) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    """Profile settings, then `overrides`: plain keys for every notebook, {"06": {...}} for one notebook.

    "{results}" in a string value stands for `results_root/<profile>` (where earlier notebooks wrote).
    """
    number = notebook.stem[:2]
    overrides = overrides or {}
    params = {"profile": profile, "output_dir": paths.relative(results_root / profile / notebook.stem)}
    params.update(PROFILES[profile].get(number, {}))
    params.update({k: v for k, v in overrides.items() if not (k[:2].isdigit() and isinstance(v, dict))})
    params.update(overrides.get(number, {}))
    results = paths.relative(results_root / profile)  # notebooks run from the repo root
    return {k: v.replace("{results}", results) if isinstance(v, str) else v for k, v in params.items()}


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import nbformat

    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def plan(profile: str = "smoke", only: list[str] | None = None, overrides: dict | None = None,
         notebook_dir: Path = paths.NOTEBOOKS, results_root: Path = paths.RESULTS) -> list[tuple[str, dict]]:
    """(notebook, parameters) in run order, without running anything; a `-p` name no selected notebook declares
    is an error (a typo would otherwise be injected silently)."""
    selected = notebooks(only, notebook_dir)
    if not selected:
        raise SystemExit(f"no notebook matches {only!r} in {notebook_dir}")
    declared = set().union(*(declared_parameters(nb) for nb in selected))
    unknown = sorted(k for k in (overrides or {}) if k not in declared and not (k[:2].isdigit()))
    if unknown:
        raise SystemExit(f"parameter(s) {unknown} are declared by none of {[nb.stem for nb in selected]}")
    return [(nb.name, parameters_for(nb, profile, overrides, results_root)) for nb in selected]


def run(profile: str = "smoke", only: list[str] | None = None, overrides: dict | None = None,
        kernel: str = "python3", notebook_dir: Path = paths.NOTEBOOKS, results_root: Path = paths.RESULTS) -> list[Path]:
    """Execute notebooks in order; the first failure stops the run with the failing cell's error. A whole-chain run
    writes `results/<profile>/pipeline.json` (seconds per notebook, `total_s`)."""
    import papermill

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # kernels inherit it: readable executed copies
    plan(profile, only, overrides, notebook_dir, results_root)  # unknown notebooks or parameters stop here
    selected = notebooks(only, notebook_dir)
    executed_dir = results_root / profile / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    done, seconds, started = [], {}, time.monotonic()
    for i, notebook in enumerate(selected, start=1):
        params = parameters_for(notebook, profile, overrides, results_root)
        print(f"[{i}/{len(selected)}] {notebook.name}  {params}", flush=True)
        start = time.monotonic()
        output = executed_dir / notebook.name
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=params, kernel_name=kernel,
                                       cwd=str(notebook_dir), progress_bar=False)
        except papermill.PapermillExecutionError as error:
            print(f"FAILED {notebook.name} after {time.monotonic() - start:.0f}s in cell {error.exec_count}: "
                  f"{error.ename}: {error.evalue}\nexecuted copy with the traceback: {output}", file=sys.stderr)
            raise SystemExit(1) from None
        seconds[notebook.stem] = round(time.monotonic() - start, 1)
        print(f"    done in {seconds[notebook.stem]:.0f}s -> {output}", flush=True)
        done.append(output)
    total = round(time.monotonic() - started, 1)
    print(f"pipeline: {len(done)} notebooks in {total / 60:.1f} min", flush=True)
    if not only:  # a whole-chain run: its timing is what README quotes
        paths.write_json({"profile": profile, "notebooks": seconds, "total_s": total, "overrides": overrides or {},
                          "cpu_count": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
                         results_root / profile / "pipeline.json")
    return done


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    parser.add_argument("--only", nargs="*", help="notebook numbers or stems, e.g. 02 03")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="parameter override for every selected notebook (Python literal or string)")
    parser.add_argument("--dry-run", action="store_true", help="print each notebook and its parameters; run nothing")
    args = parser.parse_args(argv)
    overrides = {name: _value(value) for name, value in args.p}
    if args.dry_run:
        for name, params in plan(args.profile, args.only, overrides):
            print(name, params)
        return
    run(args.profile, args.only, overrides)


if __name__ == "__main__":
    main()
