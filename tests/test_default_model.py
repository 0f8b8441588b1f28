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
