"""Every way in that the docs show works as written.

Each `python -m lib.…` command in a fenced code block of README.md or docs/*.md runs here: for real on the embedded
model and shipped data (training capped at one step), or with `--dry-run` where it needs a GPU, the network or
hours (`lib.launch` prints its command unless `--run`: that print is its dry run). Every `make` target the docs name
must parse under `make -n`. Inline mentions (`python -m lib.train …`) must name a real module and real flags.
The Colab badges and every notebook's bootstrap cell point to the one repository set in `lib/colab.py`.
"""

import os
import re
import shlex
import subprocess
import sys

import nbformat
import pytest

from lib import colab, paths

DOCS = [paths.ROOT / "README.md", *sorted((paths.ROOT / "docs").glob("*.md"))]
# A command needs a GPU, the network or hours when it names real hardware, the full profile, a Hub dataset, a 7B
# model or a hosted translator; it then runs as `--dry-run`.
HEAVY = re.compile(
    r"--hardware (rtx3090|colab-a100)|--profile full|--all\b|allenai/|heloisy/|dominguesm/|"
    r"gpt-|zephyr-7b|sabia-7b|maritaca-ai/|HuggingFaceH4/"
)
_PYTHON = re.compile(r"^(?:\S*/)?python3?\s+-m\s+(lib\.\w+)(.*)$")


def _fenced_lines(text: str):
    """(line number, line) inside ``` blocks, with `\\` continuations joined and comments dropped."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if not pending:
            start = number
        body = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if body.endswith("\\"):
            pending += body[:-1] + " "
            continue
        if pending + body:
            yield start, (pending + body).strip()
        pending = ""


def documented_commands():
    found = []
    for doc in DOCS:
        for number, line in _fenced_lines(doc.read_text(encoding="utf-8")):
            if _PYTHON.match(line):
                found.append(pytest.param(line, id=f"{doc.name}:{number}"))
    return found


def make_targets():
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for number, line in _fenced_lines(text):
            if line.startswith("make "):
                found.append(pytest.param(line, id=f"{doc.name}:{number}"))
        for match in re.finditer(r"`(make [^`]+)`", text):
            found.append(pytest.param(match.group(1), id=f"{doc.name}:inline:{match.group(1)}"))
    return found


def runnable(line: str) -> tuple[list[str], str]:
    """(argv for this interpreter, how it runs: real / dry-run / print)."""
    module, rest = _PYTHON.match(line).groups()
    args = shlex.split(rest)
    if module == "lib.launch":
        return [sys.executable, "-m", module, *[a for a in args if a != "--run"]], "print"
    if HEAVY.search(line):
        return [sys.executable, "-m", module, *args, "--dry-run"], "dry-run"
    if module == "lib.train" and "--max-steps" not in args:
        args += ["--max-steps", "1"]
    return [sys.executable, "-m", module, *args], "real"


def test_the_docs_show_commands_of_every_kind():
    commands = [p.values[0] for p in documented_commands()]
    modes = {runnable(c)[1] for c in commands}
    assert {"real", "dry-run", "print"} <= modes, modes
    assert len(commands) >= 10


LOCAL_SERVER = "http://127.0.0.1:8000/v1"  # what the docs call "your own server": a loopback judge answers here


@pytest.mark.parametrize("line", documented_commands())
@pytest.mark.slow
def test_documented_command_works_as_written(line, tmp_path):
    from tests.chat_server import JudgeServer

    argv, mode = runnable(line)
    env = {
        **os.environ,
        "PYTHONPATH": str(paths.ROOT),
        "PTLLM_RESULTS_DIR": str(tmp_path / "results"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    with JudgeServer(policy="longer") as server:
        if LOCAL_SERVER in argv:
            assert "lib.judge" in argv, "only the judge's docs point at a local server"
            argv = [server.base_url if a == LOCAL_SERVER else a for a in argv]
        # from a scratch folder: relative output folders (runs/…) land there; data paths resolve against the repo
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{mode}: {shlex.join(argv)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if LOCAL_SERVER in line:
        assert server.requests and (tmp_path / "runs" / "judge" / "judge.json").is_file()


@pytest.mark.parametrize("line", make_targets())
def test_documented_make_target_parses(line):
    done = subprocess.run(["make", "-n", *shlex.split(line)[1:]], cwd=paths.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _help(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(paths.ROOT)},
    )
    assert done.returncode == 0, f"{module} --help failed: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_inline_mentions_name_real_modules_and_flags():
    mentions = {}
    for doc in DOCS:
        for match in re.finditer(r"`(?:\S*python3?\s+)?-m\s+(lib\.\w+)([^`]*)`", doc.read_text(encoding="utf-8")):
            mentions.setdefault(match.group(1), set()).update(re.findall(r"(--[\w-]+)", match.group(2)))
    assert mentions
    for module, flags in mentions.items():
        text = _help(module)
        missing = [f for f in flags if f not in text]
        assert not missing, f"docs name {missing} for {module}, which does not accept them"


def test_colab_badges_and_bootstrap_cells_point_to_one_repository():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    notebooks = sorted(p.name for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert colab.readme_badges(readme) == [colab.colab_url(n) for n in notebooks], "run `python -m lib.colab`"
    for name in notebooks:
        nb = nbformat.read(paths.NOTEBOOKS / name, as_version=4)
        bootstrap = [c.source for c in nb.cells if c.cell_type == "code" and 'git", "clone"' in c.source]
        assert bootstrap == [colab.BOOTSTRAP], (
            f"{name}: bootstrap cell differs from lib/colab.py (run python -m lib.colab)"
        )
    assert colab.REPO in colab.BOOTSTRAP and colab.BRANCH in colab.BOOTSTRAP
