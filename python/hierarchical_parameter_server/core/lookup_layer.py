"""``hps.LookupLayer``: the HPS counterpart of ``tf.nn.embedding_lookup``."""

import tensorflow as tf

from hierarchical_parameter_server.core import lookup_ops
from hierarchical_parameter_server.core._keras import HPSLayerBase, register_serializable


@register_serializable
class LookupLayer(HPSLayerBase):
    """Looks dense ids up in one HPS table. Abbreviated as ``hps.LookupLayer(*args, **kwargs)``.

    Args:
        model_name (str): the model (``models[].model`` in the HPS config) holding the table.
        table_id (int): index of the table in the model's ``sparse_files``.
        emb_vec_size (int): the table's embedding vector size (``embedding_vecsize_per_table``).
        emb_vec_dtype: ``tf.float32``.
        ps_config_file (str): HPS JSON config, for implicit initialization (no ``hps.Init`` needed).
        global_batch_size (int): global batch size, for implicit initialization.

    The layer has no weights. ``layer(ids)`` equals ``tf.nn.embedding_lookup(table, ids)`` bit for bit;
    ids the table does not hold get the model's ``default_value_for_each_table``.

    .. code-block:: python

        lookup = hps.LookupLayer(model_name="demo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32,
                                 ps_config_file="ps.json", global_batch_size=1024)
        vectors = lookup(ids)   # ids: int32/int64 of any shape -> float32 ids.shape + [16]
    """

    def call(self, ids, max_norm=None):
        """Returns float32 ``ids.shape + [emb_vec_size]``.

        Args:
            ids: a ``tf.Tensor`` (or ``tf.RaggedTensor``) of int32 or int64 keys, any shape. The dtype must
                be int64 when the config has ``supportlonglong: true`` and int32 when it is false.
            max_norm: if not None, each vector is clipped to this L2 norm (as ``tf.nn.embedding_lookup``).
        """
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(lambda flat: self.call(flat, max_norm=max_norm), ids)
        return lookup_ops.lookup(
            values=ids,
            model_name=self.model_name,
            table_id=self.table_id,
            emb_vec_size=self.emb_vec_size,
            emb_vec_dtype=self.emb_vec_dtype,
            ps_config_file=self.ps_config_file,
            global_batch_size=self.global_batch_size,
            max_norm=max_norm,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.emb_vec_size,)
