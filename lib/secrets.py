"""Access tokens come from the environment or Colab's secret store, never from files in this repo."""

from __future__ import annotations

import os


def get_secret(name: str) -> str | None:
    """Return secret `name` (e.g. HF_TOKEN, OPENAI_API_KEY) or None when it is not configured."""
    value = os.environ.get(name)
    if value:
        return value
    try:  # Colab: the key icon in the sidebar ("Secrets"), granted to this notebook
        from google.colab import userdata  # type: ignore

        return userdata.get(name)
    except Exception:  # not on Colab, or the secret is not granted
        return None
