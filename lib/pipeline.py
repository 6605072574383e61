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
import json
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
        "09": {
            "adapters": [
                "{results}/04_qlora_canarim/adapter/final_adapter",
                "{results}/05_qlora_cosmos_qa/adapter/final_adapter",
            ]
        },
    },
    "full": {  # the real models and Hub datasets on a GPU; 06/07/08 evaluate the adapters 04/05 trained
        "01": {"source": "allenai/cosmos_qa", "backend": "mt", "limit": None, "reference": None},  # offline, no key
        "02": {
            "model": "sabia-7b",
            "source": "dominguesm/Canarim-Instruct-PTBR-Dataset",
            "limit": 28_500,
            "validation_size": 1_500,
            "max_length": 1024,
        },  # the sabia-canarim preset's (lib.train)
        "03": {"model": "zephyr-7b-beta", "source": "heloisy/cosmos_qa_ptbr", "limit": None, "max_length": 512},
        "04": {
            "model": "sabia-7b",
            "source": "dominguesm/Canarim-Instruct-PTBR-Dataset",
            "hardware": "colab-a100",
            "epochs": None,
        },
        "05": {
            "model": "zephyr-7b-beta",
            "source": "heloisy/cosmos_qa_ptbr",
            "hardware": "colab-a100",
            "epochs": None,
            "eval_steps": None,
        },
        "06": {
            "model": "zephyr-7b-beta",
            "data": "heloisy/cosmos_qa_ptbr",
            "train_data": "heloisy/cosmos_qa_ptbr",
            "adapter": "{results}/05_qlora_cosmos_qa/adapter/final_adapter",
            "generate_limit": 256,
        },
        "07": {
            "model": "sabia-7b",
            "adapter": "{results}/04_qlora_canarim/adapter/final_adapter",
            "judge_model": "gpt-4o",
            "judge_limit": None,
        },  # judge_base_url: any OpenAI-compatible server
        "08": {"model": "sabia-7b", "adapter": "{results}/04_qlora_canarim/adapter/final_adapter"},
        # the Hub datasets; Zephyr-7B-beta and 05's adapter (Sabia's 04 adapter: -p model sabia-7b -p adapters [...])
        "09": {
            "model": "zephyr-7b-beta",
            "data": None,
            "adapters": ["{results}/05_qlora_cosmos_qa/adapter/final_adapter"],
        },
    },
}

# The rehearsal: the full profile's parameters on a CPU without the Hub, for notebooks 02-09. Each 7B model is
# replaced by its tiny twin (real architecture and tokenizer, random weights: lib.models), each Hub dataset by the
# shipped sample, processed data goes to its own folder, and runs are cut short; pipeline.json lists every
# replacement next to the CPU substitutions training made (lib.sft.cpu_substitutions) and the checks that ran.
REHEARSAL_REPLACES = {
    "sabia-7b": "sabia-7b-tiny",
    "zephyr-7b-beta": "zephyr-7b-beta-tiny",
    "dominguesm/Canarim-Instruct-PTBR-Dataset": "data/samples/canarim.jsonl",
    "heloisy/cosmos_qa_ptbr": "data/samples/cosmos_qa_ptbr",
    "gpt-4o": "zephyr-7b-beta-tiny",  # the judge: a local model instead of a hosted one
}
REHEARSAL_LIMITS = {
    "02": {"processed_dir": "data/processed/rehearsal/canarim_alpaca_pt"},
    "03": {"processed_dir": "data/processed/rehearsal"},
    "04": {"limit": 16, "max_steps": 2},
    "05": {"limit": 32, "max_steps": 2},
    "06": {
        "limit": 16,
        "generate_limit": 4,
        "max_new_tokens": 8,
        "sample_data": "data/processed/rehearsal/synthetic_mc",
    },
    "07": {"limit": 4, "max_new_tokens": 16, "data": "data/processed/rehearsal/canarim_alpaca_pt", "judge_limit": 2},
    "08": {"limit": 2, "max_new_tokens": 8},
    "09": {"data": "data/samples/pt_benchmarks", "limit": 2, "max_new_tokens": 4},
}
PROFILES["rehearsal"] = {
    number: {
        **{k: REHEARSAL_REPLACES.get(v, v) if isinstance(v, str) else v for k, v in params.items()},
        **REHEARSAL_LIMITS.get(number, {}),
    }
    for number, params in PROFILES["full"].items()
    if number != "01"
}


PROFILE_NOTEBOOKS = {"rehearsal": sorted(PROFILES["rehearsal"])}

# `--cosmos-pt SOURCE`: the Cosmos QA PT data that 03, 05 and 06 read instead of the published translation; "01" is
# what notebook 01 wrote (its `dataset_dir`).
COSMOS_PT_HUB = "heloisy/cosmos_qa_ptbr"
COSMOS_PT_FROM_01 = "data/processed/cosmos_qa_ptbr"  # what a run of the profile executes (default: all)


def rehearsal_replacements() -> list[dict]:
    """Every parameter of the rehearsal that differs from the full profile: notebook, name, full and rehearsal value."""
    rows = []
    for number, params in PROFILES["rehearsal"].items():
        full = PROFILES["full"].get(number, {})
        rows += [
            {"notebook": number, "parameter": k, "full": full.get(k, "(notebook default)"), "rehearsal": v}
            for k, v in params.items()
            if full.get(k, object()) != v
        ]
    return rows


def notebooks(only: list[str] | None = None, folder: Path = paths.NOTEBOOKS) -> list[Path]:
    """Numbered notebooks in run order; `only` selects by number prefix or stem."""
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if p.stem[:2] in only or p.stem in only]
    return found


def parameters_for(
    notebook: Path,
    profile: str,
    overrides: dict | None = None,
    results_root: Path = paths.RESULTS,
    cosmos_pt: str | None = None,
) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    """Profile settings, then `overrides`: plain keys for every notebook, {"06": {...}} for one notebook.

    "{results}" in a string value stands for `results_root/<profile>` (where earlier notebooks wrote); `cosmos_pt`
    replaces the published Cosmos QA PT (`COSMOS_PT_HUB`) wherever the profile names it ("01": notebook 01's output).
    """
    number = notebook.stem[:2]
    overrides = overrides or {}
    params = {"profile": profile, "output_dir": paths.relative(results_root / profile / notebook.stem)}
    params.update(PROFILES[profile].get(number, {}))
    if cosmos_pt:
        source = COSMOS_PT_FROM_01 if cosmos_pt == "01" else cosmos_pt
        params.update({k: source for k, v in params.items() if v == COSMOS_PT_HUB})
    params.update({k: v for k, v in overrides.items() if not (k[:2].isdigit() and isinstance(v, dict))})
    params.update(overrides.get(number, {}))
    results = paths.relative(results_root / profile)  # notebooks run from the repo root

    def fill(value):
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.replace("{results}", results) if isinstance(value, str) else value

    return {k: fill(v) for k, v in params.items()}


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import nbformat

    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {
        t.id
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def plan(
    profile: str = "smoke",
    only: list[str] | None = None,
    overrides: dict | None = None,
    notebook_dir: Path = paths.NOTEBOOKS,
    results_root: Path = paths.RESULTS,
    cosmos_pt: str | None = None,
) -> list[tuple[str, dict]]:
    """(notebook, parameters) in run order, without running anything; a `-p` name no selected notebook declares
    is an error (a typo would otherwise be injected silently)."""
    selected = notebooks(only or PROFILE_NOTEBOOKS.get(profile), notebook_dir)
    if not selected:
        raise SystemExit(f"no notebook matches {only!r} in {notebook_dir}")
    declared = set().union(*(declared_parameters(nb) for nb in selected))
    unknown = sorted(k for k in (overrides or {}) if k not in declared and not (k[:2].isdigit()))
    if unknown:
        raise SystemExit(f"parameter(s) {unknown} are declared by none of {[nb.stem for nb in selected]}")
    return [(nb.name, parameters_for(nb, profile, overrides, results_root, cosmos_pt)) for nb in selected]


def run(
    profile: str = "smoke",
    only: list[str] | None = None,
    overrides: dict | None = None,
    kernel: str = "python3",
    notebook_dir: Path = paths.NOTEBOOKS,
    results_root: Path = paths.RESULTS,
    cosmos_pt: str | None = None,
    fresh: bool = False,
) -> list[Path]:
    """Execute notebooks in order; the first failure stops the run with the failing cell's error. A whole-chain run
    writes `results/<profile>/pipeline.json` (seconds per notebook, `total_s`, `training_dtypes`, and `resumed`: the
    notebooks that continued from an earlier checkpoint, whose seconds time a resume, not a run). `fresh`: notebooks that keep
    checkpoints (04, 05) start over instead of resuming."""
    import papermill

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # kernels inherit it: readable executed copies
    plan(profile, only, overrides, notebook_dir, results_root, cosmos_pt)  # unknown notebooks or parameters stop here
    chain = not only  # a whole-chain run: its timing is what README quotes
    only = only or PROFILE_NOTEBOOKS.get(profile)
    selected = notebooks(only, notebook_dir)
    executed_dir = results_root / profile / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    done, seconds, resumed, dtypes, started = [], {}, {}, {}, time.monotonic()
    for i, notebook in enumerate(selected, start=1):
        params = parameters_for(notebook, profile, overrides, results_root, cosmos_pt)
        if fresh and "fresh" in declared_parameters(notebook):
            params["fresh"] = True
        print(f"[{i}/{len(selected)}] {notebook.name}  {params}", flush=True)
        start = time.monotonic()
        output = executed_dir / notebook.name
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=params,
                kernel_name=kernel,
                cwd=str(notebook_dir),
                progress_bar=False,
            )
        except papermill.PapermillExecutionError as error:
            print(
                f"FAILED {notebook.name} after {time.monotonic() - start:.0f}s in cell {error.exec_count}: "
                f"{error.ename}: {error.evalue}\nexecuted copy with the traceback: {output}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        seconds[notebook.stem] = round(time.monotonic() - start, 1)
        print(f"    done in {seconds[notebook.stem]:.0f}s -> {output}", flush=True)
        trained = training_record(results_root / profile / notebook.stem)
        if trained.get("dtype"):
            dtypes[notebook.stem] = trained["dtype"]
        if trained.get("resumed_from"):
            resumed[notebook.stem] = trained["resumed_from"]
            print(
                f"    resumed from {trained['resumed_from']}: its time is a resume's (--fresh starts over)", flush=True
            )
        done.append(output)
    total = round(time.monotonic() - started, 1)
    print(f"pipeline: {len(done)} notebooks in {total / 60:.1f} min", flush=True)
    if chain:
        from lib import hub  # the adapters' model cards now carry the evaluations that followed their training

        hub.update_model_cards(profile, results_root)
        persist = (overrides or {}).get("persist_dir")
        record = {
            "profile": profile,
            "notebooks": seconds,
            "total_s": total,
            "fresh": fresh,
            "resumed": resumed,
            "training_dtypes": dtypes,
            "overrides": {
                k: paths.portable(v, persist_dir=persist) if isinstance(v, str) and k.endswith("_dir") else v
                for k, v in (overrides or {}).items()
            },
            "cpu_count": os.cpu_count(),
            "machine": paths.machine(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if profile == "rehearsal":
            from lib import rehearsal  # loads models: only this profile needs it

            record.update(rehearsal.report(results_root / profile, rehearsal_replacements()))
            record["total_s"] = round(time.monotonic() - started, 1)
            for check in record["checks"]:
                print(f"    {'ok  ' if check['ok'] else 'FAIL'} {check['check']}", flush=True)
        paths.write_json(record, results_root / profile / "pipeline.json")
        if not record.get("ok", True):
            raise SystemExit(f"rehearsal: a check failed (see {results_root / profile / 'pipeline.json'})")
    return done


def training_record(notebook_results: Path) -> dict:
    """What a notebook's metrics.json says of its training: `resumed_from` (the checkpoint it continued from, or
    None) and `dtype` (the compute dtype it trained in); empty for notebooks that do not train."""
    metrics = notebook_results / "metrics.json"
    if not metrics.is_file():
        return {}
    recorded = json.loads(metrics.read_text(encoding="utf-8"))
    return {k: recorded.get(k) for k in ("resumed_from", "dtype")}


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    parser.add_argument("--only", nargs="*", help="notebook numbers or stems, e.g. 02 03")
    parser.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="parameter override for every selected notebook (Python literal or string)",
    )
    parser.add_argument(
        "--persist-dir",
        help="checkpoints, adapters, the translation cache and every notebook's "
        "results also go here (e.g. Google Drive): a rerun on a fresh machine "
        "resumes from it (the notebooks' `persist_dir` parameter)",
    )
    parser.add_argument(
        "--cosmos-pt",
        metavar="SOURCE",
        help=f"the Cosmos QA PT data 03/05/06 read instead of {COSMOS_PT_HUB}: a folder, file or Hub "
        f"id; '01' is notebook 01's output ({COSMOS_PT_FROM_01})",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="notebooks that keep checkpoints (04, 05) start over instead of resuming"
    )
    parser.add_argument("--dry-run", action="store_true", help="print each notebook and its parameters; run nothing")
    args = parser.parse_args(argv)
    overrides = {name: _value(value) for name, value in args.p}
    if args.persist_dir:
        overrides["persist_dir"] = args.persist_dir
    if args.dry_run:
        for name, params in plan(args.profile, args.only, overrides, cosmos_pt=args.cosmos_pt):
            print(name, params)
        return
    run(args.profile, args.only, overrides, cosmos_pt=args.cosmos_pt, fresh=args.fresh)


if __name__ == "__main__":
    main()
