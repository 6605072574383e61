"""Where the repository lives, for Colab: the one place a fork edits (`REPO`, `BRANCH`), then runs
`python -m lib.colab` to rewrite every notebook's bootstrap cell and the README's "Open in Colab" badges.

The bootstrap cell must know the URL before `lib` can be imported (on a fresh Colab runtime it clones the repo), so
each notebook carries a generated copy; `tests/test_docs.py` checks that all of them, and the badges, agree with this
file.
"""

from __future__ import annotations

import re
import sys

from lib import paths

REPO = "ptbr-llm-lab/ptbr-llm-lab"  # GitHub owner/name: a fork changes this line, then runs `python -m lib.colab`
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO}.git"
COLAB = "https://colab.research.google.com/github"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
MARKER = "# Bootstrap (written by `python -m lib.colab`)"

BOOTSTRAP = f'''{MARKER}: make `lib` importable from a local checkout, or clone the repo on a fresh Colab runtime.
import os, pathlib, subprocess, sys
REPO_URL = os.environ.get("PTLLM_REPO_URL", "{REPO_URL}")  # the repo's URL is set in lib/colab.py
ROOT = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if (p / "lib" / "__init__.py").is_file()), None)
if ROOT is None:  # Colab: clone once; Colab's CUDA torch is kept (requirements.txt leaves torch out), the rest pinned
    ROOT = pathlib.Path("/content/ptbr-llm-lab")
    if not ROOT.exists():
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{BRANCH}", REPO_URL, str(ROOT)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt")], check=True)
    if profile == "full" and not persist_dir:  # a lost runtime must not cost the run: offer Google Drive
        from google.colab import drive
        drive.mount("/content/drive")
        persist_dir = "/content/drive/MyDrive/ptbr-llm-lab"
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))'''

_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\((?P<url>[^)]*)\)")


def colab_url(notebook: str) -> str:
    """Colab's address of a committed notebook, e.g. `05_qlora_cosmos_qa.ipynb`."""
    return f"{COLAB}/{REPO}/blob/{BRANCH}/notebooks/{notebook}"


def badge(notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook)})"


def readme_badges(readme: str) -> list[str]:
    """The Colab URLs the README's badges point to, in order."""
    return [m.group("url") for m in _BADGE.finditer(readme)]


def _bootstrap_index(cells) -> int:
    """The bootstrap cell: the first code cell after the parameters that clones the repo."""
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and 'git", "clone"' in cell.source:
            return i
    raise ValueError("no bootstrap cell (a code cell running `git clone`)")


def sync(readme_path=paths.ROOT / "README.md") -> list[str]:
    """Rewrite the bootstrap cells and README badges from `REPO`/`BRANCH`; returns the files changed."""
    import nbformat

    changed = []
    for path in sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[_bootstrap_index(nb.cells)]
        if cell.source != BOOTSTRAP:
            cell.source = BOOTSTRAP
            nbformat.write(nb, path)
            changed.append(str(path))
    text = readme_path.read_text(encoding="utf-8")
    updated = _BADGE.sub(lambda m: badge(m.group("url").rsplit("/", 1)[-1]), text)
    if updated != text:
        readme_path.write_text(updated, encoding="utf-8")
        changed.append(str(readme_path))
    return changed


if __name__ == "__main__":
    for name in sync():
        print("updated", name)
    sys.exit(0)
