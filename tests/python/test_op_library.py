"""The ops have exactly the signature of NVIDIA's plugin, so graphs and SavedModels made with it load."""

import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

import hierarchical_parameter_server  # noqa: F401  (registers the ops)


def _args(args):
    return [(a.name, tf.dtypes.as_dtype(a.type).name if a.type else a.type_attr) for a in args]


def _attrs(op):
    out = {}
    for a in op.attr:
        allowed = [tf.dtypes.as_dtype(t).name for t in a.allowed_values.list.type]
        out[a.name] = (a.type, allowed, a.minimum if a.has_minimum else None)
    return out


def test_init_op_signature():
    op = op_def_registry.get("Init")
    assert _args(op.input_arg) == [("global_replica_id", "int32"), ("num_replicas_in_sync", "int32"), ("visible_devices", "int32")]
    assert _args(op.output_arg) == [("status", "string")]
    assert _attrs(op) == {"ps_config_file": ("string", [], None), "global_batch_size": ("int", [], 1)}


def test_lookup_op_signature():
    op = op_def_registry.get("Lookup")
    assert _args(op.input_arg) == [("values", "value_dtype"), ("global_replica_id", "int32"), ("init_status", "status_dtype")]
    assert _args(op.output_arg) == [("emb_vector", "dtype")]
    assert _attrs(op) == {
        "value_dtype": ("type", ["int32", "int64"], None),
        "model_name": ("string", [], None),
        "table_id": ("int", [], None),
        "emb_vec_size": ("int", [], None),
        "dtype": ("type", ["float32"], None),
        "status_dtype": ("type", ["string"], None),
    }
    assert not op.is_stateful


def test_max_keys_per_lookup_op(hps):
    from hierarchical_parameter_server.core import hps_lib

    op = op_def_registry.get("MaxKeysPerLookup")
    assert _args(op.input_arg) == [("init_status", "status_dtype")]
    assert _args(op.output_arg) == [("limit", "int64")]
    ok = tf.constant("OK")
    # conftest's model bar: max_batch_size 1024, maxnum_catfeature_query_per_table_per_sample [3, 5].
    assert int(hps_lib.max_keys_per_lookup(init_status=ok, model_name="bar", table_id=0)) == 3072
    assert int(hps_lib.max_keys_per_lookup(init_status=ok, model_name="bar", table_id=1)) == 5120
    with pytest.raises(tf.errors.InvalidArgumentError, match="table_id 2 is out of range"):
        hps_lib.max_keys_per_lookup(init_status=ok, model_name="bar", table_id=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match='unknown model_name "nope"'):
        hps_lib.max_keys_per_lookup(init_status=ok, model_name="nope", table_id=0)


def test_shape_inference():
    from hierarchical_parameter_server.core import hps_lib

    @tf.function(input_signature=[tf.TensorSpec([None, 7], tf.int64)])
    def f(ids):
        status = hps_lib.init(0, 1, [0], ps_config_file="unused.json", global_batch_size=1)
        return status, hps_lib.lookup(ids, 0, status, model_name="m", table_id=0, emb_vec_size=4, dtype=tf.float32)

    status, vectors = f.get_concrete_function().structured_outputs
    assert status.shape.rank == 0
    # emb_vec_size cannot be read by a C-API shape function: the last dimension is unknown at op level and
    # set by the layers.
    assert vectors.shape.as_list() == [None, 7, None]
