"""filtag-kg: FilTag filter tagging of CNNs, published as a knowledge graph.

    import filtag_kg
    stats = filtag_kg.collect(model, source)          # z_c(m,i) for every conv layer
    tags = filtag_kg.tag(stats, k=[1, 5], q=[5])      # k-best and q-quantile tags

TensorFlow is imported only when a function that needs it is called.
"""

from __future__ import annotations

# `collect` itself, not a wrapper taking (*args, **kwargs): help(), inspect.signature and IDEs show its
# parameters and docstring. filtag_kg.collection imports TensorFlow only inside the functions that run it.
from .collection import collect
from .errors import UserError
from .records import ActivationStats, HeldOut, Tag, TagSet
from .tagging import tag

__all__ = ["ActivationStats", "HeldOut", "Tag", "TagSet", "UserError", "collect", "tag"]
