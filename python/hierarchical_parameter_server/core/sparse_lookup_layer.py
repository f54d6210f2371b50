"""``hps.SparseLookupLayer``: the HPS counterpart of ``tf.nn.embedding_lookup_sparse``."""

import tensorflow as tf

from hierarchical_parameter_server.core import lookup_ops
from hierarchical_parameter_server.core._keras import HPSLayerBase, register_serializable


@register_serializable
class SparseLookupLayer(HPSLayerBase):
    """Looks sparse ids up in one HPS table and combines each row. Abbreviated as
    ``hps.SparseLookupLayer(*args, **kwargs)``; same constructor as ``hps.LookupLayer``.

    ``layer(sp_ids, sp_weights, combiner=...)`` equals ``tf.nn.embedding_lookup_sparse(table, sp_ids,
    sp_weights, combiner=...)`` bit for bit: the combination runs with the same TensorFlow ops on the same
    rows in the same order. Ids that fit in one lookup (``max_batch_size ×
    maxnum_catfeature_query_per_table_per_sample``) are looked up as they are, one vector per id; more are
    deduplicated first (``tf.unique``), so only more distinct ids than that fail.
    """

    def call(self, sp_ids, sp_weights, name=None, combiner=None, max_norm=None):
        """Combines the embeddings of each row of ``sp_ids``.

        Args:
            sp_ids: ``N x M`` ``tf.SparseTensor`` of int32/int64 ids, indices in canonical row-major order.
                Empty rows are allowed and treated as ``tf.nn.embedding_lookup_sparse`` treats them.
            sp_weights: None (all weights 1) or a ``tf.SparseTensor`` of float weights with the indices of
                ``sp_ids``.
            name: name scope of the ops.
            combiner: ``"mean"`` (default), ``"sum"`` or ``"sqrtn"``.
            max_norm: if not None, each embedding is clipped to this L2 norm before combining.

        Returns:
            float32 ``[R, emb_vec_size]`` where ``R`` is 1 + the last row of ``sp_ids`` holding an id (0 when
            there is none), exactly as ``tf.nn.embedding_lookup_sparse``: an empty row before it is a zero
            row, empty rows after it are not in the result. ``R == N`` when the last row holds an id.

        Raises:
            TypeError: ``sp_ids`` is not a SparseTensor, or ``sp_weights`` neither None nor a SparseTensor.
            ValueError: ``combiner`` is not one of "mean", "sqrtn", "sum".
        """
        if combiner is None:
            combiner = "mean"
        if combiner not in ("mean", "sqrtn", "sum"):
            raise ValueError(f"combiner must be one of 'mean', 'sqrtn' or 'sum', got {combiner}")
        if not isinstance(sp_ids, tf.SparseTensor):
            raise TypeError(f"sp_ids must be SparseTensor, got {type(sp_ids)}")
        ignore_weights = sp_weights is None
        if not ignore_weights:
            if not isinstance(sp_weights, tf.SparseTensor):
                raise TypeError(f"sp_weights must be either None or SparseTensor, got {type(sp_weights)}")
            sp_ids.values.get_shape().assert_is_compatible_with(sp_weights.values.get_shape())
            sp_ids.indices.get_shape().assert_is_compatible_with(sp_weights.indices.get_shape())
            sp_ids.dense_shape.get_shape().assert_is_compatible_with(sp_weights.dense_shape.get_shape())

        with tf.name_scope(name or "hps_embedding_lookup_sparse"):
            segment_ids = sp_ids.indices[:, 0]
            ids = sp_ids.values
            # One vector per id: the rows tf.nn.embedding_lookup_sparse reads, in its order (it reads them from
            # the table by id, or gathers them from the looked-up unique ids by idx; the values are the same).
            embeddings = lookup_ops.lookup_each(
                values=ids,
                model_name=self.model_name,
                table_id=self.table_id,
                emb_vec_size=self.emb_vec_size,
                emb_vec_dtype=self.emb_vec_dtype,
                ps_config_file=self.ps_config_file,
                global_batch_size=self.global_batch_size,
                max_norm=max_norm,
            )
            # The combination below is tf.nn.embedding_lookup_sparse's, op for op (unweighted, TF reads row
            # ids[i] of the table where this reads row i of `embeddings`: the same vector).
            if not ignore_weights:
                if segment_ids.dtype != tf.int32:
                    segment_ids = tf.cast(segment_ids, tf.int32)
                weights = sp_weights.values
                if weights.dtype != embeddings.dtype:
                    weights = tf.cast(weights, embeddings.dtype)
                ones_shape = tf.expand_dims(tf.rank(embeddings) - 1, 0)
                weights_shape = tf.shape(weights)
                ones = tf.ones(ones_shape, dtype=weights_shape.dtype)
                bcast_weights_shape = tf.concat([weights_shape, ones], 0)
                orig_weights_shape = weights.get_shape()
                weights = tf.reshape(weights, bcast_weights_shape)
                if embeddings.get_shape().ndims is not None:
                    weights.set_shape(orig_weights_shape.concatenate([1 for _ in range(embeddings.get_shape().ndims - 1)]))
                embeddings *= weights
                if combiner == "sum":
                    embeddings = tf.math.segment_sum(embeddings, segment_ids)
                elif combiner == "mean":
                    embeddings = tf.math.segment_sum(embeddings, segment_ids)
                    weight_sum = tf.math.segment_sum(weights, segment_ids)
                    embeddings = tf.math.divide_no_nan(embeddings, weight_sum)
                else:  # sqrtn
                    embeddings = tf.math.segment_sum(embeddings, segment_ids)
                    weights_squared = tf.math.pow(weights, 2)
                    weight_sum = tf.math.segment_sum(weights_squared, segment_ids)
                    weight_sum_sqrt = tf.math.sqrt(weight_sum)
                    embeddings = tf.math.divide_no_nan(embeddings, weight_sum_sqrt)
            else:
                if segment_ids.dtype not in (tf.int32, tf.int64):
                    segment_ids = tf.cast(segment_ids, tf.int32)
                positions = tf.range(tf.size(ids, out_type=tf.int64))
                if combiner == "sum":
                    embeddings = tf.sparse.segment_sum(embeddings, positions, segment_ids)
                elif combiner == "mean":
                    embeddings = tf.sparse.segment_mean(embeddings, positions, segment_ids)
                else:  # sqrtn
                    embeddings = tf.sparse.segment_sqrt_n(embeddings, positions, segment_ids)
            # As in tf.nn.embedding_lookup_sparse, the segment ops give max(row with an id) + 1 rows: fewer
            # than dense_shape[0] when trailing rows are empty (0 when all are), so the row count is not static.
            embeddings.set_shape([None, self.emb_vec_size])
        return embeddings

    def compute_output_shape(self, input_shape):
        # Rows: max(row with an id) + 1, known only at run time (trailing empty rows are dropped, as TF does).
        return (None, self.emb_vec_size)
