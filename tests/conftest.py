"""Shared fixtures. The cache and data directories of every test session are fresh temporary ones."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's cache and store out of the tests, and the temporary files of the processes
    the tests kill (which cannot remove theirs) in the session's folder, which pytest prunes."""
    os.environ["FILTAG_KG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["FILTAG_KG_DATA"] = str(tmp_path_factory.mktemp("data"))
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def filtag_vgg16_file() -> Path:
    """The FilTag authors' published VGG16 block5_conv3 tags, from ../shared (skipped when absent)."""
    path = SHARED_DATA / "filtag-vgg16" / "EXAMPLE_FilterTags_VGG16_conv5-3_k1.txt"
    if not path.is_file():
        pytest.skip(f"real FilTag data not found at {path} (it lives in the shared/ folder beside the project)")
    return path


@pytest.fixture(scope="session")
def default_model():
    """The default CNN, trained once per test session into the session's cache."""
    from filtag_kg.models import default_model as load_default

    return load_default()


@pytest.fixture(scope="session")
def default_stats(default_model):
    """FilTag statistics of the default CNN on the default split (train: z; held-out: per image)."""
    import filtag_kg
    from filtag_kg.data import animal_shape

    return filtag_kg.collect(default_model, animal_shape(), progress=False)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run `filtag-kg ARGS` in-process; returns (exit code, stdout, stderr)."""
    import sys

    from filtag_kg.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        old = sys.argv
        sys.argv = ["filtag-kg", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            sys.argv = old
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli_ok(run_cli):
    """Run `filtag-kg ARGS`, which must succeed (its stderr is the failure message); returns stdout."""

    def run(*args: str) -> str:
        code, out, err = run_cli(*args)
        assert code == 0, err
        return out

    return run


@pytest.fixture(scope="session")
def wn():
    """WordNet 3.0 as the package finds it (here: the Debian copy, cached in the test session's folder)."""
    from filtag_kg.kg.wordnet import WordNet

    return WordNet.load()


@pytest.fixture(scope="session")
def run_a():
    """A synthetic tagging run (the store and publishing tests' first run)."""
    from test_export import synthetic_tags

    return synthetic_tags(seed=0)


@pytest.fixture(scope="session")
def run_b():
    """A second synthetic run with other selections."""
    from test_export import synthetic_tags

    return synthetic_tags(seed=3, k=(2,), q=())
