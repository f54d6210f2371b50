"""tf-keras (TF_USE_LEGACY_KERAS=1): layers in a functional model, Keras 2 SavedModel save and
tf.keras.models.load_model, as NVIDIA's notebooks do. scripts/setup.sh installs tf-keras; without it this
test fails rather than skips, so the tf-keras support is always checked."""

import importlib.util
import os

import pytest


def test_legacy_keras_saved_model(run_python, tmp_path, monkeypatch):
    assert importlib.util.find_spec("tf_keras") is not None, "tf_keras is not installed: run scripts/setup.sh"
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    out = run_python(
        """
        import os, numpy as np, tensorflow as tf
        import hierarchical_parameter_server as hps
        from conftest import make_config, make_tables
        assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
        work = %r
        tables = make_tables(work, seed=3)
        config = make_config(os.path.join(work, "ps.json"), tables)
        inputs = tf.keras.Input(shape=(3,), dtype=tf.int64)
        vectors = hps.LookupLayer(model_name="bar", table_id=0, emb_vec_size=64, emb_vec_dtype=tf.float32, name="lookup",
                                  ps_config_file=config, global_batch_size=1024)(inputs)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, kernel_initializer="ones")(tf.keras.layers.Flatten()(vectors)))
        ids = np.random.RandomState(0).randint(0, 5000, size=(16, 3)).astype(np.int64)
        want = model(ids).numpy()
        np.testing.assert_array_equal(tf.keras.Model(inputs, vectors)(ids).numpy(), tables[("bar", 0)][1][ids])
        model.save(os.path.join(work, "saved"))
        loaded = tf.keras.models.load_model(os.path.join(work, "saved"))
        assert any(type(l).__name__ == "LookupLayer" for l in loaded.layers)
        np.testing.assert_array_equal(loaded(ids).numpy(), want)
        print("legacy-ok")
        """
        % str(tmp_path)
    )
    assert "legacy-ok" in out
