"""Hierarchical Parameter Server for PyTorch.

The same hierarchy as the TensorFlow layers (device cache → volatile DB → persistent DB → default value),
served to PyTorch through the C API (``libhps.so``, called with ctypes: no extension to build, one library
for every torch version).

.. code-block:: python

    import torch
    import hierarchical_parameter_server.torch as hps_torch

    hps_torch.Init("ps.json")
    lookup = hps_torch.LookupLayer(model_name="demo", table_id=0, emb_vec_size=16)
    vectors = lookup(ids)                      # == F.embedding(ids, table), on ids.device
    bag = hps_torch.SparseLookupLayer(model_name="demo", table_id=0, emb_vec_size=16, mode="sum")
    pooled = bag(ids_1d, offsets)              # == F.embedding_bag(ids_1d, table, offsets, mode="sum")

Importing this module does not import TensorFlow.
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("hierarchical_parameter_server.torch needs PyTorch: pip install torch") from e

from hierarchical_parameter_server._version import __version__
from hierarchical_parameter_server.torch._capi import (
    HPSError,
    HPSRuntimeError,
    HPSValueError,
    library_path,
)
from hierarchical_parameter_server.torch._server import Init, is_initialized, statistics, wait
from hierarchical_parameter_server.torch.layers import LookupLayer, SparseLookupLayer
from hierarchical_parameter_server.torch.ops import lookup


def c_library_version():
    """The version of the loaded C library ("major.minor.patch")."""
    from hierarchical_parameter_server.torch import _capi

    return _capi.version()


__all__ = [
    "Init",
    "LookupLayer",
    "SparseLookupLayer",
    "lookup",
    "is_initialized",
    "statistics",
    "wait",
    "library_path",
    "c_library_version",
    "HPSError",
    "HPSValueError",
    "HPSRuntimeError",
    "__version__",
]
