"""Where filtag-kg keeps things: a cache (trained default model, downloads) and a data directory (the store).

Both follow the platform's conventions (platformdirs) and can be moved with environment variables
FILTAG_KG_CACHE and FILTAG_KG_DATA.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    path = Path(os.environ.get("FILTAG_KG_CACHE") or platformdirs.user_cache_dir("filtag-kg"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    path = Path(os.environ.get("FILTAG_KG_DATA") or platformdirs.user_data_dir("filtag-kg"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_store_path() -> Path:
    """The embedded store used when no --store is given."""
    return data_dir() / "store"


def demo_dir() -> Path:
    """Where `filtag-kg demo` writes (stats/, tags/, evaluation/), and where explain/evaluate look by default."""
    return data_dir() / "demo"
