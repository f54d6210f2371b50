"""Table export helpers: tf.Variable / Keras Embedding / NumPy → table directory; SOK dumps."""

import os

import numpy as np
import pytest
import tensorflow as tf

import hierarchical_parameter_server as hps


def test_export_numpy_default_keys(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = hps.export_table(str(tmp_path / "t"), array)
    assert os.path.getsize(os.path.join(path, "key")) == 4 * 8
    assert os.path.getsize(os.path.join(path, "emb_vector")) == 4 * 3 * 4
    keys, vectors = hps.read_table(path)
    np.testing.assert_array_equal(keys, np.arange(4))
    np.testing.assert_array_equal(vectors, array)


def test_export_variable_and_keras_embedding(tmp_path):
    variable = tf.Variable(np.random.RandomState(0).rand(5, 2).astype(np.float32))
    keys, vectors = hps.read_table(hps.export_table(str(tmp_path / "v"), variable, keys=[10, 20, 30, 40, 50]), 2)
    np.testing.assert_array_equal(keys, [10, 20, 30, 40, 50])
    np.testing.assert_array_equal(vectors, variable.numpy())
    layer = tf.keras.layers.Embedding(7, 4)
    layer.build((None,))
    _, vectors = hps.read_table(hps.export_table(str(tmp_path / "e"), layer))
    np.testing.assert_array_equal(vectors, layer.get_weights()[0])


def test_export_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        hps.export_table(str(tmp_path / "a"), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="one key per row"):
        hps.export_table(str(tmp_path / "b"), np.zeros((3, 2), np.float32), keys=[1, 2])
    with pytest.raises(ValueError, match="unique"):
        hps.export_table(str(tmp_path / "c"), np.zeros((3, 2), np.float32), keys=[1, 1, 2])


def test_sok_dump_to_table(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    keys = np.array([3, 1, 4, 1000000007], np.int64)
    values = np.random.RandomState(1).rand(4, 8).astype(np.float32)
    keys.tofile(str(dump / "EmbeddingVariable_keys.file"))
    values.tofile(str(dump / "EmbeddingVariable_values.file"))
    got_keys, got_values = hps.read_sok_dump(str(dump))
    np.testing.assert_array_equal(got_keys, keys)
    np.testing.assert_array_equal(got_values, values)
    path = hps.sok_dump_to_table(str(dump), str(tmp_path / "table"))
    k, v = hps.read_table(path, 8)
    np.testing.assert_array_equal(k, keys)
    np.testing.assert_array_equal(v, values)
    with pytest.raises(FileNotFoundError):
        hps.read_sok_dump(str(tmp_path / "table"))
