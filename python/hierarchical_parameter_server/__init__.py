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
and importing the TensorFlow part does not import PyTorch. The op library is still registered with
TensorFlow as soon as both are imported (in either order), so a SavedModel holding HPS ops loads after a
plain ``import hierarchical_parameter_server``, as it always did.
"""

import importlib
import importlib.abc
import sys

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
    "publish": ("hierarchical_parameter_server._publish", "publish"),
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
    "publish",
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


def _register_tensorflow_ops():
    """Loads the TensorFlow op library (once TensorFlow is imported). A failure is left for the first use of
    a TensorFlow name to report: a PyTorch-only installation must import fine."""
    try:
        importlib.import_module("hierarchical_parameter_server.core.hps_lib")
    except Exception:  # noqa: BLE001 - reported again, with its message, by hps.Init / hps.hps_lib
        pass


class _RegisterOpsAfterTensorFlow(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``tensorflow`` is about to be imported, it wraps the real loader so that
    the HPS op library is registered right after TensorFlow finished importing."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_register(module):
            exec_module(module)
            _register_tensorflow_ops()

        try:
            loader.exec_module = exec_then_register
        except (AttributeError, TypeError):  # pragma: no cover - a loader that takes no attributes
            pass
        return spec


if "tensorflow" in sys.modules:
    _register_tensorflow_ops()
elif not any(isinstance(f, _RegisterOpsAfterTensorFlow) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterOpsAfterTensorFlow())
