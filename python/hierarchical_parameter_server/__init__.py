"""Hierarchical Parameter Server (HPS) for TensorFlow.

A drop-in successor to NVIDIA's ``hierarchical_parameter_server`` plugin: ``Init``, ``LookupLayer`` and
``SparseLookupLayer`` with the same signatures and results, backed by the Swift parameter server in
``libhierarchical_parameter_server.so``.

.. code-block:: python

    import hierarchical_parameter_server as hps

    hps.Init(global_batch_size=1024, ps_config_file="ps.json")
    lookup = hps.LookupLayer(model_name="demo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32)
    vectors = lookup(ids)  # == tf.nn.embedding_lookup(table, ids)

The TensorFlow names (``Init``, ``LookupLayer``, ``SparseLookupLayer``, ``hps_lib``) are loaded on first
use, so importing this package (or :mod:`hierarchical_parameter_server.torch`) does not import TensorFlow,
and importing the TensorFlow part does not import PyTorch.
"""

import importlib

from hierarchical_parameter_server._version import __version__
from hierarchical_parameter_server.core.tables import (
    export_table,
    read_table,
    read_sok_dump,
    sok_dump_to_table,
)

# name -> (module, attribute or None for the module itself); imported on first access (PEP 562).
_LAZY = {
    "Init": ("hierarchical_parameter_server.core.initialize", "Init"),
    "LookupLayer": ("hierarchical_parameter_server.core.lookup_layer", "LookupLayer"),
    "SparseLookupLayer": ("hierarchical_parameter_server.core.sparse_lookup_layer", "SparseLookupLayer"),
    "hps_lib": ("hierarchical_parameter_server.hps_lib", None),
    "torch": ("hierarchical_parameter_server.torch", None),
}

__all__ = [
    "Init",
    "LookupLayer",
    "SparseLookupLayer",
    "export_table",
    "read_table",
    "read_sok_dump",
    "sok_dump_to_table",
    "hps_lib",
    "__version__",
]


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    module_name, attribute = target
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
