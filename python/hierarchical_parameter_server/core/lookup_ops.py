"""The ``Lookup`` op as the layers use it: lazy ``Init``, replica id, static shape and ``max_norm``."""

import os
import sys

import tensorflow as tf

from hierarchical_parameter_server.core import hps_lib
from hierarchical_parameter_server.core.initialize import init_status


def global_replica_id():
    """The replica whose lookup session serves this call, chosen as HPS does: Horovod's local rank when
    Horovod is imported; the replica id under a ``tf.distribute`` strategy; ``OMPI_COMM_WORLD_RANK`` under
    MPI; otherwise 0."""
    if "horovod.tensorflow" in sys.modules:
        import horovod.tensorflow as hvd

        return hvd.local_rank()
    if tf.distribute.has_strategy():
        ctx = tf.distribute.get_replica_context()
        if ctx is not None:
            replica_id = ctx.replica_id_in_sync_group
        else:
            try:
                from tensorflow.python.distribute import distribute_lib

                replica_id = distribute_lib.get_update_replica_id()
            except (ImportError, AttributeError):
                replica_id = None
        return 0 if replica_id is None else replica_id
    if os.getenv("OMPI_COMM_WORLD_SIZE") is not None:
        return int(os.getenv("OMPI_COMM_WORLD_RANK", "0"))
    return 0


def clip_by_max_norm(embeddings, ids, max_norm):
    """Clips each vector to L2 norm ``max_norm`` exactly as ``tf.nn.embedding_lookup`` does."""
    if max_norm is None:
        return embeddings
    ids_rank = ids.get_shape().ndims
    emb_rank = embeddings.get_shape().ndims
    if ids_rank and emb_rank:
        axes = list(range(ids_rank, emb_rank))
    else:
        axes = tf.range(tf.rank(ids), tf.rank(embeddings))
    return tf.clip_by_norm(embeddings, max_norm, axes=axes)


def lookup(values, model_name, table_id, emb_vec_size, emb_vec_dtype, ps_config_file, global_batch_size, max_norm=None, status=None):
    """Looks ``values`` up in table ``table_id`` of ``model_name``: float32 ``values.shape + [emb_vec_size]``.
    ``status`` is the ``Init`` status to use (default: a new ``Init`` op's)."""
    values = tf.convert_to_tensor(values)
    if values.dtype not in (tf.int32, tf.int64):
        raise TypeError("ids must be int32 or int64, got %s" % values.dtype.name)
    if status is None:
        status = init_status(global_batch_size, ps_config_file)
    replica_id = global_replica_id()
    vectors = hps_lib.lookup(
        values=values,
        global_replica_id=tf.cast(replica_id, tf.int32),
        init_status=status,
        model_name=model_name,
        table_id=int(table_id),
        emb_vec_size=int(emb_vec_size),
        dtype=tf.as_dtype(emb_vec_dtype),
    )
    vectors.set_shape(values.get_shape().concatenate([int(emb_vec_size)]))
    return clip_by_max_norm(vectors, values, max_norm)


def lookup_each(values, model_name, table_id, emb_vec_size, emb_vec_dtype, ps_config_file, global_batch_size, max_norm=None):
    """One vector per id of the 1-D ``values``, in order: what ``tf.gather(lookup(unique(values)), idx)`` gives,
    without the ``tf.unique`` pass when the ids fit in one ``Lookup`` (``MaxKeysPerLookup``; the session
    deduplicates them itself). More ids than that are deduplicated first, as NVIDIA's sparse layer does, so
    they fail only when the distinct ids do not fit."""
    values = tf.convert_to_tensor(values)
    status = init_status(global_batch_size, ps_config_file)
    args = dict(
        model_name=model_name, table_id=table_id, emb_vec_size=emb_vec_size, emb_vec_dtype=emb_vec_dtype,
        ps_config_file=ps_config_file, global_batch_size=global_batch_size, max_norm=max_norm, status=status,
    )
    limit = hps_lib.max_keys_per_lookup(init_status=status, model_name=model_name, table_id=int(table_id))

    def each():
        return lookup(values=values, **args)

    def deduplicated():
        unique, idx = tf.unique(values)
        return tf.gather(lookup(values=unique, **args), idx)

    return tf.cond(tf.size(values, out_type=tf.int64) <= limit, each, deduplicated)
