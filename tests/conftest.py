import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def gemma_tokenizer():
    from lib import models

    return models.load_tokenizer("embedded")


@pytest.fixture(scope="session")
def smol_tokenizer():
    from lib import models

    return models.load_tokenizer("embedded-small")
