"""The embedded default: data loading, the split, the trained CNN and whether its tags mean something."""

from __future__ import annotations

import numpy as np
import pytest

import filtag_kg
from filtag_kg.data import ANIMAL_SHAPE_CLASSES, _NumpyOnlyUnpickler, animal_shape, load_animal_shape_arrays
from filtag_kg.models import conv_layers, default_model_info


def test_animal_shape_arrays_and_split() -> None:
    images, labels = load_animal_shape_arrays()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    source = animal_shape()
    train, held = source.split("train"), source.split("heldout")
    assert len(train) == 8000 and len(held) == 2000
    assert np.bincount(train.labels).tolist() == [800] * 10  # stratified
    assert not set(train.ids) & set(held.ids)
    assert animal_shape().split("heldout").ids == held.ids  # seeded: the same split every time
    assert animal_shape(seed=1).split("heldout").ids != held.ids
    assert source.classes == ANIMAL_SHAPE_CLASSES


def test_restricted_unpickler_refuses_code() -> None:
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        _NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_default_model_is_accurate_and_cached(default_model) -> None:
    info = default_model_info()
    assert info["heldout_accuracy"] >= 0.85
    assert len(conv_layers(default_model.model)) >= 3
    from filtag_kg.models import default_model as load_again

    again = load_again()  # from the cache: the very same weights
    assert again.describe()["hash"] == default_model.describe()["hash"]


def test_default_tags_mean_something(default_stats) -> None:
    """In the last conv layer, each class's top-1 filter responds clearly more to it than to the others."""
    assert default_stats.heldout is not None and default_stats.heldout.accuracy() >= 0.85
    last = default_stats.layers[-1]
    z = default_stats.class_means(last)
    tags = filtag_kg.tag(default_stats, k=1)
    for t in tags:
        if t.layer != last:
            continue
        others = np.delete(z[:, t.filter], t.class_index).mean()
        assert t.score >= 1.3 * others and t.score - others >= 0.05, (t, others)


def test_damaged_cached_default_model_is_trained_again(tmp_path, monkeypatch, capsys) -> None:
    """A cut-off cached model gave Keras' 'File not found' traceback, a metrics file without the
    metrics a KeyError in the demo; both are trained again (here: a stand-in for the training)."""
    from filtag_kg import models

    monkeypatch.setenv("FILTAG_KG_CACHE", str(tmp_path))
    trained = []

    def quick_training(seed: int = 0) -> tuple:
        import keras

        trained.append(seed)
        keras.utils.set_random_seed(seed)
        return models.build_default_cnn(), {"heldout_accuracy": 0.5, "train_seconds": 1.0, "epochs": 0, "seed": seed}

    monkeypatch.setattr(models, "train_default_model", quick_training)
    first = models.default_model()
    path = models.default_model_path()
    assert trained == [0] and path.is_file()
    path.write_bytes(path.read_bytes()[:1000])
    again = models.default_model()
    assert trained == [0, 0] and again.describe()["hash"] == first.describe()["hash"]
    assert f"the cached default model {path} or its metrics" in capsys.readouterr().err
    path.with_suffix(".json").write_text("{}")
    models.default_model()
    assert trained == [0, 0, 0] and models.default_model_info()["heldout_accuracy"] == 0.5
    models.default_model()
    assert trained == [0, 0, 0]  # a sound cache is used


def test_unwritable_model_cache_is_named_before_training(tmp_path, monkeypatch) -> None:
    """The half minute of training was lost to 'models: File exists' when the cache could not take it."""
    from filtag_kg import models
    from filtag_kg.errors import UserError

    monkeypatch.setenv("FILTAG_KG_CACHE", str(tmp_path))
    (tmp_path / "models").write_text("in the way")
    monkeypatch.setattr(models, "train_default_model", lambda seed=0: pytest.fail("trained before the check"))
    with pytest.raises(UserError, match=f"cannot cache the default model in {tmp_path / 'models'} .*FILTAG_KG_CACHE"):
        models.default_model()


def test_runs_training_the_default_model_together_each_keep_their_file(tmp_path, monkeypatch) -> None:
    """Two runs started together on a fresh cache (shards) both train; while the first wrote its
    file the second saved and renamed the same temporary name, so the first failed (FileNotFoundError)
    or left a broken zip as the cached model. Here the second run happens inside the first's save."""
    import keras

    from filtag_kg import models

    monkeypatch.setenv("FILTAG_KG_CACHE", str(tmp_path))
    runs = []

    def training(seed: int = 0) -> tuple:
        keras.utils.set_random_seed(seed)
        model = models.build_default_cnn()
        if not runs:  # the first run: another one trains and caches while this one saves
            save = model.save

            def save_while_another_run_caches(filepath, *args, **kwargs) -> None:
                save(filepath, *args, **kwargs)
                models.default_model()

            model.save = save_while_another_run_caches
        runs.append(seed)
        return model, {"heldout_accuracy": 0.5, "train_seconds": 1.0}

    monkeypatch.setattr(models, "train_default_model", training)
    first = models.default_model()
    assert len(runs) == 2 and sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "default-cnn-v1-seed0.json", "default-cnn-v1-seed0.keras"]
    assert models.default_model().describe()["hash"] == first.describe()["hash"]
