"""A SavedModel holding HPS layers saves, and serves the same values when loaded in a fresh process
(explicit hps.Init, or lazy initialization from the layer's own ps_config_file)."""

import os

import numpy as np
import pytest
import tensorflow as tf


class Serving(tf.Module):
    def __init__(self, hps, dense_lookup, sparse_lookup):
        super().__init__()
        self.dense_lookup = dense_lookup
        self.sparse_lookup = sparse_lookup

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64), tf.SparseTensorSpec([None, 5], tf.int64)])
    def serve(self, ids, sp_ids):
        return {
            "dense": self.dense_lookup(ids),
            "sparse": self.sparse_lookup(sp_ids, None, combiner="mean"),
        }


@pytest.mark.parametrize("lazy", [False, True])
def test_saved_model_round_trip(hps, tables, config_file, tmp_path, run_python, lazy):
    kwargs = dict(ps_config_file=config_file, global_batch_size=1024) if lazy else {}
    dense = hps.LookupLayer(model_name="bar", table_id=0, emb_vec_size=64, emb_vec_dtype=tf.float32, **kwargs)
    sparse = hps.SparseLookupLayer(model_name="bar", table_id=1, emb_vec_size=32, emb_vec_dtype=tf.float32, **kwargs)
    module = Serving(hps, dense, sparse)
    rng = np.random.RandomState(4)
    ids = rng.randint(0, 5000, size=(64, 3)).astype(np.int64)
    sp = tf.sparse.from_dense(tf.constant(rng.randint(1, 2000, size=(64, 5)).astype(np.int64)))
    expected = module.serve(ids, sp)
    np.testing.assert_array_equal(expected["dense"].numpy(), tables[("bar", 0)][1][ids])
    path = str(tmp_path / "saved_model")
    tf.saved_model.save(module, path)
    np.save(str(tmp_path / "ids.npy"), ids)
    np.save(str(tmp_path / "sp_dense.npy"), tf.sparse.to_dense(sp).numpy())
    np.save(str(tmp_path / "dense.npy"), expected["dense"].numpy())
    np.save(str(tmp_path / "sparse.npy"), expected["sparse"].numpy())

    out = run_python(
        """
        import numpy as np, tensorflow as tf
        import hierarchical_parameter_server as hps
        work, lazy, config = %r, %r, %r
        if not lazy:
            assert hps.Init(global_batch_size=1024, ps_config_file=config) == "OK"
        loaded = tf.saved_model.load(work + "/saved_model")
        ids = np.load(work + "/ids.npy")
        sp = tf.sparse.from_dense(tf.constant(np.load(work + "/sp_dense.npy")))
        out = loaded.serve(tf.constant(ids), sp)
        np.testing.assert_array_equal(out["dense"].numpy(), np.load(work + "/dense.npy"))
        np.testing.assert_array_equal(out["sparse"].numpy(), np.load(work + "/sparse.npy"))
        print("served-ok")
        """
        % (str(tmp_path), lazy, config_file)
    )
    assert "served-ok" in out


def test_keras_export_serves_in_fresh_process(hps, tables, config_file, tmp_path, run_python):
    keras = tf.keras
    if not hasattr(keras.Model, "export"):
        pytest.skip("this Keras has no Model.export")
    inputs = keras.Input(shape=(10,), dtype="int64")
    vectors = hps.LookupLayer(model_name="foo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32,
                              ps_config_file=config_file, global_batch_size=1024)(inputs)
    logits = keras.layers.Dense(1, kernel_initializer="ones")(keras.layers.Flatten()(vectors))
    model = keras.Model(inputs, logits)
    ids = np.random.RandomState(8).randint(0, 3000, size=(16, 10)).astype(np.int64)
    expected = model(ids).numpy()
    path = str(tmp_path / "exported")
    model.export(path, verbose=False) if "verbose" in model.export.__code__.co_varnames else model.export(path)
    np.save(str(tmp_path / "ids.npy"), ids)
    np.save(str(tmp_path / "logits.npy"), expected)
    out = run_python(
        """
        import numpy as np, tensorflow as tf
        import hierarchical_parameter_server as hps
        work = %r
        loaded = tf.saved_model.load(work + "/exported")
        got = loaded.serve(tf.constant(np.load(work + "/ids.npy")))
        np.testing.assert_array_equal(got.numpy(), np.load(work + "/logits.npy"))
        print("export-ok")
        """
        % str(tmp_path)
    )
    assert "export-ok" in out
