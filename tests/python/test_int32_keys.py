"""supportlonglong: false — int32 keys, int64 keys rejected."""


def test_int32_keys_without_supportlonglong(run_python, tmp_path):
    out = run_python(
        """
        import os, numpy as np, tensorflow as tf
        import hierarchical_parameter_server as hps
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work, seed=5)
        config = make_config(os.path.join(work, "ps32.json"), tables, supportlonglong=False)
        assert hps.Init(global_batch_size=1024, ps_config_file=config) == "OK"
        for (model, table), (_, array) in tables.items():
            layer = hps.LookupLayer(model_name=model, table_id=table, emb_vec_size=array.shape[1], emb_vec_dtype=tf.float32)
            ids = np.random.RandomState(table).randint(0, array.shape[0], size=(256, 3)).astype(np.int32)
            np.testing.assert_array_equal(layer(ids).numpy(), tf.nn.embedding_lookup(array, ids).numpy())
            np.testing.assert_array_equal(tf.function(layer)(ids).numpy(), array[ids])
            sparse = hps.SparseLookupLayer(model_name=model, table_id=table, emb_vec_size=array.shape[1], emb_vec_dtype=tf.float32)
            sp = tf.sparse.from_dense(tf.constant(ids[:, :2] + 1))
            np.testing.assert_array_equal(sparse(sp, None, combiner="sum").numpy(), tf.nn.embedding_lookup_sparse(array, sp, None, combiner="sum").numpy())
        try:
            hps.LookupLayer(model_name="foo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32)(tf.constant([1], tf.int64))
        except tf.errors.InvalidArgumentError as e:
            assert "supportlonglong=false" in e.message and "int32" in e.message, e.message
            print("int64-rejected")
        print("int32-ok")
        """
        % str(tmp_path)
    )
    assert "int32-ok" in out and "int64-rejected" in out
