import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN_PATTERNS = [
    re.compile(p)
    for p in (
        r"hf_[A-Za-z0-9]{30,}",
        r"sk-(?:proj-)?[A-Za-z0-9_-]{32,}",
        r"gh[pousr]_[A-Za-z0-9]{36,}",
        r"AKIA[0-9A-Z]{16}",
    )
]


def find_tokens(text: str) -> list[str]:
    return [m.group(0) for pattern in TOKEN_PATTERNS for m in pattern.finditer(text)]


def repo_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_the_detector_recognises_tokens():
    fake = "hf_" + "A1b2C3d4" * 5  # built at run time, so this file itself holds no token
    assert find_tokens(f'login(token="{fake}")') == [fake]
    assert find_tokens("sk-" + "x" * 40) and not find_tokens("hf_short")


def test_no_access_token_is_committed():
    files = repo_files()
    assert files, "git lists no files"
    leaks = {
        str(p.relative_to(ROOT)): find_tokens(p.read_text(errors="ignore"))
        for p in files
        if p.stat().st_size < 5_000_000
    }
    assert not {k: v for k, v in leaks.items() if v}, "access tokens in the repo: use HF_TOKEN/OPENAI_API_KEY env vars"


def test_remote_code_stays_off():
    for path in (ROOT / "lib").glob("*.py"):
        assert "trust_remote_code=True" not in path.read_text(), path
