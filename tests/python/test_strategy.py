"""MirroredStrategy over two logical CPU devices: one lookup session per replica, deployed_device_list [0, 1]."""


def test_mirrored_strategy_two_replicas(run_python, tmp_path):
    out = run_python(
        """
        import os, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import hierarchical_parameter_server as hps
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work, seed=2)
        config = make_config(os.path.join(work, "ps2.json"), tables, deployed_device_list=[0, 1])
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            status = hps.Init(global_batch_size=1024, ps_config_file=config)
            assert tuple(status) == ("OK", "OK"), status
            layer = hps.LookupLayer(model_name="bar", table_id=0, emb_vec_size=64, emb_vec_dtype=tf.float32)
        array = tables[("bar", 0)][1]
        rng = np.random.RandomState(0)
        per_replica_ids = [rng.randint(0, 5000, size=(512, 3)).astype(np.int64) for _ in range(2)]
        ids = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(per_replica_ids[ctx.replica_id_in_sync_group]))

        @tf.function
        def step(ids):
            return strategy.run(lambda x: layer(x), args=(ids,))

        results = strategy.experimental_local_results(step(ids))
        assert len(results) == 2
        for r, got in enumerate(results):
            np.testing.assert_array_equal(got.numpy(), array[per_replica_ids[r]])
        print("strategy-ok")
        """
        % str(tmp_path)
    )
    assert "strategy-ok" in out
