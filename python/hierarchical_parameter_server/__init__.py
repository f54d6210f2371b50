"""Hierarchical Parameter Server (HPS) for TensorFlow.

A drop-in successor to NVIDIA's ``hierarchical_parameter_server`` plugin: ``Init``, ``LookupLayer`` and
``SparseLookupLayer`` with the same signatures and results, backed by the Swift parameter server in
``libhierarchical_parameter_server.so``.

.. code-block:: python

    import hierarchical_parameter_server as hps

    hps.Init(global_batch_size=1024, ps_config_file="ps.json")
    lookup = hps.LookupLayer(model_name="demo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32)
    vectors = lookup(ids)  # == tf.nn.embedding_lookup(table, ids)
"""

from hierarchical_parameter_server._version import __version__
from hierarchical_parameter_server import hps_lib
from hierarchical_parameter_server.core.initialize import Init
from hierarchical_parameter_server.core.lookup_layer import LookupLayer
from hierarchical_parameter_server.core.sparse_lookup_layer import SparseLookupLayer
from hierarchical_parameter_server.core.tables import (
    export_table,
    read_table,
    read_sok_dump,
    sok_dump_to_table,
)

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
