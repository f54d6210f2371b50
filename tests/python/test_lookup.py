"""hps.LookupLayer equals tf.nn.embedding_lookup bit for bit; unknown keys get the default value."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import MODELS

TABLES = [(name, t) for name, spec in MODELS.items() for t in range(len(spec["tables"]))]


def _ids(rows, shape, seed):
    return np.random.RandomState(seed).randint(0, rows, size=shape).astype(np.int64)


def _layer(hps, model, table, tables):
    dim = tables[(model, table)][1].shape[1]
    return hps.LookupLayer(model_name=model, table_id=table, emb_vec_size=dim, emb_vec_dtype=tf.float32)


def test_init_returns_ok_and_second_init_changes_nothing(hps, config_file):
    assert hps.Init(global_batch_size=1024, ps_config_file=config_file) == "OK"
    # Any arguments, even a missing file, once initialized.
    assert hps.Init(global_batch_size=7, ps_config_file="/does/not/exist.json") == "OK"


@pytest.mark.parametrize("model,table", TABLES)
@pytest.mark.parametrize("max_norm", [None, 0.0, 0.1, 10.0])
def test_lookup_equals_embedding_lookup(hps, tables, model, table, max_norm):
    array = tables[(model, table)][1]
    layer = _layer(hps, model, table, tables)
    q = MODELS[model]["maxnum"][table]
    ids = _ids(array.shape[0], (1024, q), seed=table + 7)
    got = layer(ids, max_norm=max_norm).numpy()
    want = tf.nn.embedding_lookup(array, ids, max_norm=max_norm).numpy()
    assert got.shape == (1024, q, array.shape[1])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(), (5,), (4, 3), (2, 3, 1)])
def test_lookup_any_shape(hps, tables, shape):
    array = tables[("bar", 1)][1]
    layer = _layer(hps, "bar", 1, tables)
    ids = _ids(array.shape[0], shape, seed=3)
    got = layer(tf.constant(ids))
    assert got.shape == shape + (32,)
    np.testing.assert_array_equal(got.numpy(), tf.nn.embedding_lookup(array, ids).numpy())


def test_lookup_duplicates_and_empty(hps, tables):
    array = tables[("foo", 0)][1]
    layer = _layer(hps, "foo", 0, tables)
    ids = np.array([5, 5, 7, 5, 0, 7], np.int64)
    np.testing.assert_array_equal(layer(ids).numpy(), array[ids])
    empty = layer(tf.zeros([0, 3], tf.int64))
    assert empty.shape == (0, 3, 16)


@pytest.mark.parametrize("model,table", TABLES)
def test_unknown_keys_get_default_value(hps, tables, model, table):
    array = tables[(model, table)][1]
    default = MODELS[model]["default"][table]
    layer = _layer(hps, model, table, tables)
    rows = array.shape[0]
    ids = np.array([0, rows, rows + 12345, 1, -3, 2**40], np.int64)
    got = layer(ids).numpy()
    np.testing.assert_array_equal(got[[0, 3]], array[[0, 1]])
    for i in (1, 2, 4, 5):
        np.testing.assert_array_equal(got[i], np.full(array.shape[1], default, np.float32))


def test_lookup_in_tf_function(hps, tables):
    array = tables[("bar", 0)][1]
    layer = _layer(hps, "bar", 0, tables)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64)])
    def serve(ids):
        return layer(ids)

    out_spec = serve.get_concrete_function().structured_outputs
    assert out_spec.shape.as_list() == [None, 3, 64]
    for seed in range(3):
        ids = _ids(array.shape[0], (100 + seed, 3), seed)
        np.testing.assert_array_equal(serve(ids).numpy(), array[ids])


def test_lookup_with_max_norm_in_tf_function(hps, tables):
    array = tables[("foo", 0)][1]
    layer = _layer(hps, "foo", 0, tables)
    ids = _ids(array.shape[0], (64, 10), 11)
    got = tf.function(lambda x: layer(x, max_norm=0.5))(ids)
    np.testing.assert_array_equal(got.numpy(), tf.nn.embedding_lookup(array, ids, max_norm=0.5).numpy())


def test_ragged_ids(hps, tables):
    array = tables[("foo", 0)][1]
    layer = _layer(hps, "foo", 0, tables)
    ids = tf.ragged.constant([[1, 2, 3], [4], [5, 6]], dtype=tf.int64)
    got = layer(ids)
    want = tf.nn.embedding_lookup(array, ids)
    np.testing.assert_array_equal(got.flat_values.numpy(), want.flat_values.numpy())


def test_keras_functional_model(hps, tables):
    keras = tf.keras
    array = tables[("bar", 1)][1]
    inputs = keras.Input(shape=(5,), dtype="int64")
    vectors = _layer(hps, "bar", 1, tables)(inputs)
    model = keras.Model(inputs, vectors)
    ids = _ids(array.shape[0], (32, 5), 5)
    np.testing.assert_array_equal(model(ids).numpy(), array[ids])
    np.testing.assert_array_equal(model.predict(ids, verbose=0), array[ids])


def test_layer_config_round_trip(hps, tables):
    layer = hps.LookupLayer(
        model_name="foo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32, ps_config_file="x.json", global_batch_size=64, name="lk"
    )
    config = layer.get_config()
    assert config["model_name"] == "foo" and config["emb_vec_dtype"] == "float32" and config["global_batch_size"] == 64
    clone = hps.LookupLayer.from_config(config)
    assert (clone.model_name, clone.table_id, clone.emb_vec_size, clone.ps_config_file, clone.name) == ("foo", 0, 16, "x.json", "lk")
    sparse = hps.SparseLookupLayer.from_config(hps.SparseLookupLayer(model_name="bar", table_id=1, emb_vec_size=32, emb_vec_dtype="float32").get_config())
    assert (sparse.model_name, sparse.table_id, sparse.emb_vec_size) == ("bar", 1, 32)


def test_keras_save_and_load(hps, tables, tmp_path):
    keras = tf.keras
    array = tables[("foo", 0)][1]
    inputs = keras.Input(shape=(10,), dtype="int64")
    model = keras.Model(inputs, _layer(hps, "foo", 0, tables)(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    ids = _ids(array.shape[0], (8, 10), 1)
    np.testing.assert_array_equal(loaded(ids).numpy(), array[ids])


def test_concurrent_lookups_in_one_graph(hps, tables):
    """Several Lookup kernels run at once on TF's inter-op threads; every result stays exact."""
    cases = [(name, t) for name, t in TABLES for _ in range(3)]
    layers = [_layer(hps, name, t, tables) for name, t in cases]
    ids = [_ids(tables[c][1].shape[0], (1024, MODELS[c[0]]["maxnum"][c[1]]), seed=i) for i, c in enumerate(cases)]

    @tf.function
    def all_lookups(*batch):
        return [layer(x) for layer, x in zip(layers, batch)]

    for _ in range(3):
        for c, x, got in zip(cases, ids, all_lookups(*ids)):
            np.testing.assert_array_equal(got.numpy(), tables[c][1][x])
