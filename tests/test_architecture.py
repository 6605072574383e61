"""The shape of `lib`: one room per stage, no import circle, no import that runs back up, no module past 600 lines,
and every module placed on a floor in docs/architecture.md."""

import ast
import re

import pytest

from lib import paths

MODULES = sorted(p.stem for p in (paths.ROOT / "lib").glob("*.py") if p.stem != "__init__")
DOC = paths.ROOT / "docs" / "architecture.md"
MAX_LINES = 600


def floors() -> dict[str, int]:
    table = DOC.read_text(encoding="utf-8").split("<!-- floors:start", 1)[1].split("<!-- floors:end -->", 1)[0]
    return {m: int(f) for f, m in re.findall(r"^\| (\d+) \| `(\w+)` \|", table, flags=re.MULTILINE)}


def lib_imports(module: str) -> set[str]:
    """Every `lib` module `module` imports, at the top or inside a function."""
    tree = ast.parse((paths.ROOT / "lib" / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lib":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lib."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lib.")}
    return (found & set(MODULES)) - {module}


def test_every_module_has_a_floor_in_the_architecture_page():
    placed = floors()
    assert not (missing := [m for m in MODULES if m not in placed]), f"add {missing} to docs/architecture.md"
    assert not (gone := [m for m in placed if m not in MODULES]), f"docs/architecture.md names {gone}: no such module"


@pytest.mark.parametrize("module", MODULES)
def test_imports_only_run_down(module):
    placed = floors()
    upward = [m for m in lib_imports(module) if placed.get(m, 99) >= placed.get(module, -1)]
    assert not upward, f"lib.{module} (floor {placed.get(module)}) imports {upward} on its own floor or above"


def test_no_import_circle():
    graph = {m: lib_imports(m) for m in MODULES}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    assert not [m for m in MODULES if reaches(m, m, {m})]


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_over_600_lines(module):
    lines = len((paths.ROOT / "lib" / f"{module}.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"lib/{module}.py has {lines} lines: give a concern a module of its own"
