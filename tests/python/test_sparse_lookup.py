"""hps.SparseLookupLayer equals tf.nn.embedding_lookup_sparse bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import MODELS

TABLES = [(name, t) for name, spec in MODELS.items() for t in range(len(spec["tables"]))]


def _sparse_ids(rows, batch, max_nnz, seed, dtype=tf.int64):
    """A batch × max_nnz SparseTensor with 1..max_nnz ids per row (canonical order, no empty row)."""
    rng = np.random.RandomState(seed)
    indices, values = [], []
    for r in range(batch):
        for c in range(rng.randint(1, max_nnz + 1)):
            indices.append([r, c])
            values.append(rng.randint(0, rows))
    return tf.SparseTensor(
        indices=np.array(indices, np.int64), values=tf.constant(values, dtype=dtype), dense_shape=[batch, max_nnz]
    )


def _weights(sp_ids, seed):
    rng = np.random.RandomState(seed)
    values = rng.uniform(0.1, 2.0, size=sp_ids.values.shape[0]).astype(np.float32)
    return tf.SparseTensor(indices=sp_ids.indices, values=values, dense_shape=sp_ids.dense_shape)


def _layer(hps, model, table, tables):
    dim = tables[(model, table)][1].shape[1]
    return hps.SparseLookupLayer(model_name=model, table_id=table, emb_vec_size=dim, emb_vec_dtype=tf.float32)


@pytest.mark.parametrize("model,table", TABLES)
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_lookup_equals_embedding_lookup_sparse(hps, tables, model, table, combiner, weighted):
    array = tables[(model, table)][1]
    layer = _layer(hps, model, table, tables)
    q = MODELS[model]["maxnum"][table]
    sp_ids = _sparse_ids(array.shape[0], 512, q, seed=hash((model, table)) % 1000)
    sp_weights = _weights(sp_ids, 3) if weighted else None
    got = layer(sp_ids, sp_weights, combiner=combiner)
    want = tf.nn.embedding_lookup_sparse(array, sp_ids, sp_weights, combiner=combiner)
    assert got.shape == (512, array.shape[1])
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("max_norm", [0.1, 10.0])
def test_sparse_lookup_max_norm(hps, tables, weighted, max_norm):
    array = tables[("foo", 0)][1]
    sp_ids = _sparse_ids(array.shape[0], 128, 10, seed=9)
    sp_weights = _weights(sp_ids, 4) if weighted else None
    got = _layer(hps, "foo", 0, tables)(sp_ids, sp_weights, combiner="mean", max_norm=max_norm)
    want = tf.nn.embedding_lookup_sparse(array, sp_ids, sp_weights, combiner="mean", max_norm=max_norm)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_default_combiner_is_mean(hps, tables):
    array = tables[("bar", 0)][1]
    sp_ids = _sparse_ids(array.shape[0], 64, 3, seed=2)
    got = _layer(hps, "bar", 0, tables)(sp_ids, None)
    np.testing.assert_array_equal(got.numpy(), tf.nn.embedding_lookup_sparse(array, sp_ids, None, combiner="mean").numpy())


def test_sparse_lookup_in_tf_function(hps, tables):
    array = tables[("bar", 1)][1]
    layer = _layer(hps, "bar", 1, tables)
    spec = tf.SparseTensorSpec([None, 5], tf.int64)

    @tf.function(input_signature=[spec])
    def serve(sp_ids):
        return layer(sp_ids, None, combiner="sqrtn")

    for seed in range(2):
        sp_ids = _sparse_ids(array.shape[0], 100, 5, seed)
        want = tf.nn.embedding_lookup_sparse(array, sp_ids, None, combiner="sqrtn")
        np.testing.assert_array_equal(serve(sp_ids).numpy(), want.numpy())


def _sparse_ids_of(values, per_row):
    """A SparseTensor holding `values`, `per_row` per row (canonical order)."""
    n = len(values)
    indices = np.stack([np.arange(n) // per_row, np.arange(n) % per_row], axis=1).astype(np.int64)
    return tf.SparseTensor(indices=indices, values=tf.constant(values, tf.int64), dense_shape=[(n + per_row - 1) // per_row, per_row])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("in_function", [False, True])
def test_sparse_lookup_above_the_key_limit(hps, tables, weighted, in_function):
    # bar table 0 takes 1024 × 3 = 3072 keys per lookup: 4000 ids of 500 distinct ones are deduplicated first
    # (as NVIDIA's layer always does) and answered; 3073 distinct ids are not.
    array = tables[("bar", 0)][1]
    layer = _layer(hps, "bar", 0, tables)
    call = tf.function(lambda sp, w: layer(sp, w, combiner="mean")) if in_function else (lambda sp, w: layer(sp, w, combiner="mean"))
    rng = np.random.RandomState(5)
    sp_ids = _sparse_ids_of(rng.randint(0, 500, size=4000), per_row=4)
    sp_weights = _weights(sp_ids, 6) if weighted else None
    want = tf.nn.embedding_lookup_sparse(array, sp_ids, sp_weights, combiner="mean")
    np.testing.assert_array_equal(call(sp_ids, sp_weights).numpy(), want.numpy())
    at_limit = _sparse_ids_of(rng.permutation(array.shape[0])[:3072], per_row=3)
    want = tf.nn.embedding_lookup_sparse(array, at_limit, None, combiner="mean")
    np.testing.assert_array_equal(call(at_limit, None).numpy(), want.numpy())
    too_many = _sparse_ids_of(rng.permutation(array.shape[0])[:3073], per_row=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"3073 keys for model bar table 0 exceed.*3072"):
        call(too_many, _weights(too_many, 7) if weighted else None)


def test_sparse_lookup_argument_errors(hps, tables):
    layer = _layer(hps, "foo", 0, tables)
    sp_ids = _sparse_ids(100, 4, 2, seed=1)
    with pytest.raises(ValueError, match="combiner"):
        layer(sp_ids, None, combiner="max")
    with pytest.raises(TypeError, match="sp_ids must be SparseTensor"):
        layer(tf.constant([[1, 2]], tf.int64), None)
    with pytest.raises(TypeError, match="sp_weights"):
        layer(sp_ids, tf.constant([1.0]))


# Empty rows: tf.nn.embedding_lookup_sparse combines with segment ops, so its result has
# max(row with an id) + 1 rows: an empty row in the middle is a zero row, trailing empty rows are dropped,
# and with no id at all the result has 0 rows. The layer returns exactly that, eagerly and in tf.function.
EMPTY_ROW_CASES = {
    # name: (dense_shape, rows that hold ids)
    "issue_3x2_row2_empty": ([3, 2], [0, 1]),
    "first_empty": ([4, 3], [1, 2, 3]),
    "middle_empty": ([5, 3], [0, 1, 3, 4]),
    "last_two_empty": ([5, 3], [0, 1, 2]),
    "first_middle_last_empty": ([7, 2], [1, 2, 4, 5]),
    "single_row_nonempty": ([6, 4], [3]),
    "all_empty": ([4, 3], []),
    "zero_rows": ([0, 3], []),
}


def _sparse_ids_rows(num_ids, dense_shape, rows, seed, dtype=tf.int64):
    rng = np.random.RandomState(seed)
    indices, values = [], []
    for r in rows:
        for c in range(rng.randint(1, dense_shape[1] + 1)):
            indices.append([r, c])
            values.append(rng.randint(0, num_ids))
    return tf.SparseTensor(
        indices=np.array(indices, np.int64).reshape(-1, 2),
        values=tf.constant(values, dtype=dtype),
        dense_shape=dense_shape,
    )


@pytest.mark.parametrize("case", sorted(EMPTY_ROW_CASES))
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_lookup_empty_rows_eager(hps, tables, case, combiner, weighted):
    dense_shape, rows = EMPTY_ROW_CASES[case]
    array = tables[("bar", 1)][1]
    sp_ids = _sparse_ids_rows(array.shape[0], dense_shape, rows, seed=len(case))
    sp_weights = _weights(sp_ids, 5) if weighted else None
    got = _layer(hps, "bar", 1, tables)(sp_ids, sp_weights, combiner=combiner)
    want = tf.nn.embedding_lookup_sparse(array, sp_ids, sp_weights, combiner=combiner)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("static_rows", [False, True])
def test_sparse_lookup_empty_rows_in_tf_function(hps, tables, weighted, static_rows):
    array = tables[("bar", 1)][1]
    layer = _layer(hps, "bar", 1, tables)
    reference = tf.constant(array)
    ids_spec = tf.SparseTensorSpec([7 if static_rows else None, 2], tf.int64)
    weights_spec = tf.SparseTensorSpec([7 if static_rows else None, 2], tf.float32)

    if weighted:
        @tf.function(input_signature=[ids_spec, weights_spec])
        def serve(sp_ids, sp_weights):
            got = layer(sp_ids, sp_weights, combiner="mean")
            want = tf.nn.embedding_lookup_sparse(reference, sp_ids, sp_weights, combiner="mean")
            # The static shapes agree too: neither claims the 7 rows of dense_shape.
            assert got.shape.as_list() == want.shape.as_list(), (got.shape, want.shape)
            return got, want
    else:
        @tf.function(input_signature=[ids_spec])
        def serve(sp_ids):
            got = layer(sp_ids, None, combiner="mean")
            want = tf.nn.embedding_lookup_sparse(reference, sp_ids, None, combiner="mean")
            assert got.shape.as_list() == want.shape.as_list(), (got.shape, want.shape)
            return got, want

    for case in ["first_middle_last_empty", "all_empty", "single_row_nonempty"]:
        _, rows = EMPTY_ROW_CASES[case]
        sp_ids = _sparse_ids_rows(array.shape[0], [7, 2], [r for r in rows if r < 7], seed=3)
        args = (sp_ids, _weights(sp_ids, 6)) if weighted else (sp_ids,)
        got, want = serve(*args)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want.numpy())
