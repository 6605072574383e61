"""Every parameter of every notebook is visible to papermill (`papermill --help-notebook`, `inspect_notebook`).

Papermill reads the `parameters` cell line by line with a regex, not with Python's parser: a line it cannot read
(e.g. a second `=` in the comment) is logged as "Unable to parse line N" and the parameter silently disappears from
`--help-notebook`. These tests parse the cell with `ast` independently and compare the two views, for every notebook
in `notebooks/` (a notebook added later is covered by the glob).
"""

import ast
import io
import json
import logging
import tokenize
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from papermill.cli import papermill as papermill_cli
from papermill.inspection import inspect_notebook

from lib import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))


def _parameters_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (papermill reads the first)"
    return tagged[0].source


def _assignments(source: str) -> dict[str, tuple[ast.expr, str]]:
    """name -> (value node, expected help) for each top-level assignment, read with Python's own parser.

    The expected help is the comment on the assignment's last line: papermill reads help only there.
    """
    comments = {
        tok.start[0]: tok.string[1:].strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name = node.target.id
        else:
            raise AssertionError(f"line {node.lineno}: not a `name = value` assignment, papermill cannot list it")
        lost = [n for n in range(node.lineno, node.end_lineno) if n in comments]
        assert not lost, f"{name}: comment on line {lost[0]} is dropped by papermill; put the help on the last line"
        found[name] = (node.value, comments.get(node.end_lineno, ""))
    return found


@contextmanager
def _papermill_warnings():
    """Collect what papermill logs at WARNING or above (e.g. "Unable to parse line ...")."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _problems(path: Path) -> list[str]:
    """Every difference between the parameters cell as Python reads it and as papermill lists it."""
    expected = _assignments(_parameters_source(path))
    with _papermill_warnings() as records:
        listed = inspect_notebook(str(path))
    problems = [f"papermill logged: {r.getMessage()}" for r in records]
    if missing := [n for n in expected if n not in listed]:
        problems.append(f"papermill does not list {missing}")
    if extra := [n for n in listed if n not in expected]:
        problems.append(f"papermill lists {extra}, which the cell does not assign")
    for name in expected.keys() & listed.keys():
        value, help_text = expected[name]
        default = listed[name]["default"]
        try:
            same = ast.dump(ast.parse(default, mode="eval").body) == ast.dump(value)
        except SyntaxError:
            same = False
        if not same:
            problems.append(f"{name}: papermill's default {default!r} != {ast.unparse(value)!r}")
        if listed[name]["help"] != help_text:
            problems.append(f"{name}: papermill's help {listed[name]['help']!r} != the comment {help_text!r}")
    return problems


def test_the_glob_finds_the_notebooks():
    assert len(NOTEBOOKS) >= 8 and all(p.name[:2].isdigit() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_its_default_and_help(path):
    assert _problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_help_notebook_shows_every_parameter(path):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI calls logging.basicConfig: leave the root as it was
    try:
        result = CliRunner().invoke(papermill_cli, ["--help-notebook", str(path)])
    finally:
        root.handlers[:], root.level = handlers, level
    assert result.exit_code == 0, result.output
    shown = {line.split(":")[0].strip() for line in result.output.splitlines() if line.startswith("  ") and ":" in line}
    assert set(_assignments(_parameters_source(path))) <= shown
    assert "Unable to parse" not in result.output


def test_the_check_catches_a_comment_papermill_cannot_read(tmp_path):
    """The failure of issue 32: a `name = value` inside a comment hides the parameter from papermill."""
    source = 'profile = "smoke"\ndtype = "auto"  # auto = bf16 on a GPU, else fp32\nlimit = None  # first N rows\n'
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(
        cells=[cell], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    path = tmp_path / "09_example.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    problems = _problems(path)
    assert any("Unable to parse line 2" in p for p in problems), problems
    assert "papermill does not list ['dtype']" in problems
