"""Shared fixtures. The cache and data directories of every test session are fresh temporary ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's cache and store out of the tests."""
    os.environ["FILTAG_KG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["FILTAG_KG_DATA"] = str(tmp_path_factory.mktemp("data"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def filtag_vgg16_file() -> Path:
    """The FilTag authors' published VGG16 block5_conv3 tags, from ../shared (skipped when absent)."""
    path = SHARED_DATA / "filtag-vgg16" / "EXAMPLE_FilterTags_VGG16_conv5-3_k1.txt"
    if not path.is_file():
        pytest.skip(f"real FilTag data not found at {path} (it lives in the shared/ folder beside the project)")
    return path
