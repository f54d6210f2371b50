"""Every bad request fails the op with a tf.errors.* error naming the problem (never a crash, never an
unwritten output)."""

import numpy as np
import pytest
import tensorflow as tf


def _lookup(hps, model="foo", table=0, dim=16, ids=None):
    if ids is None:
        ids = tf.constant([[1, 2, 3]], tf.int64)
    return hps.LookupLayer(model_name=model, table_id=table, emb_vec_size=dim, emb_vec_dtype=tf.float32)(ids)


def test_unknown_model(hps):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"unknown model_name \"nope\".*foo.*bar"):
        _lookup(hps, model="nope")


@pytest.mark.parametrize("table", [1, 5])
def test_table_id_out_of_range(hps, table):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"table_id %d is out of range: model foo has 1 table" % table):
        _lookup(hps, table=table)


def test_negative_table_id(hps):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"table_id must not be negative"):
        _lookup(hps, table=-1)


def test_wrong_emb_vec_size(hps):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"emb_vec_size 8 does not match model bar table 1.*32"):
        _lookup(hps, model="bar", table=1, dim=8)


def test_int32_keys_with_supportlonglong(hps):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"int32 but the config sets supportlonglong=true.*int64"):
        _lookup(hps, ids=tf.constant([[1, 2]], tf.int32))


def test_too_many_keys(hps):
    ids = tf.zeros([1024 * 3 + 1], tf.int64)  # bar table 0: max_batch_size 1024 × 3 keys per sample
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"3073 keys for model bar table 0 exceed.*max_batch_size 1024.*3072"):
        _lookup(hps, model="bar", table=0, dim=64, ids=ids)
    # The limit itself is fine.
    assert _lookup(hps, model="bar", table=0, dim=64, ids=tf.zeros([3072], tf.int64)).shape == (3072, 64)


def test_replica_without_session(hps):
    ids = tf.constant([1], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"global_replica_id 3"):
        hps.hps_lib.lookup(values=ids, global_replica_id=3, init_status="OK", model_name="foo", table_id=0, emb_vec_size=16, dtype=tf.float32)


def test_bad_init_status(hps):
    ids = tf.constant([1], tf.int64)
    with pytest.raises(tf.errors.FailedPreconditionError, match=r"hierarchical parameter server is not initialized\."):
        hps.hps_lib.lookup(values=ids, global_replica_id=0, init_status="not ok", model_name="foo", table_id=0, emb_vec_size=16, dtype=tf.float32)


def test_error_in_tf_function(hps):
    layer = hps.LookupLayer(model_name="nope", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown model_name"):
        tf.function(layer)(tf.constant([1, 2], tf.int64))


def test_not_initialized(run_python):
    out = run_python(
        """
        import tensorflow as tf
        import hierarchical_parameter_server as hps
        ids = tf.constant([1, 2], tf.int64)
        try:
            hps.hps_lib.lookup(values=ids, global_replica_id=0, init_status="OK", model_name="foo", table_id=0, emb_vec_size=16, dtype=tf.float32)
        except tf.errors.FailedPreconditionError as e:
            assert "hierarchical parameter server is not initialized." in e.message, e.message
            print("raw-op-ok")
        layer = hps.LookupLayer(model_name="foo", table_id=0, emb_vec_size=16, emb_vec_dtype=tf.float32)
        try:
            layer(ids)  # lazy Init with the default (empty) ps_config_file
        except tf.errors.InvalidArgumentError as e:
            assert "ps_config_file is empty" in e.message, e.message
            print("layer-ok")
        """
    )
    assert "raw-op-ok" in out and "layer-ok" in out


def test_init_failures_then_success(run_python, tmp_path):
    out = run_python(
        """
        import os, tensorflow as tf
        import hierarchical_parameter_server as hps
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work)

        def expect(error, pattern, **kwargs):
            try:
                hps.Init(**kwargs)
            except error as e:
                assert pattern in e.message, (pattern, e.message)
                print("ok:", pattern)
            else:
                raise AssertionError("no error for %%s" %% kwargs)

        missing = os.path.join(work, "missing.json")
        expect(tf.errors.AbortedError, missing, global_batch_size=16, ps_config_file=missing)
        good = make_config(os.path.join(work, "ps.json"), tables)
        expect(tf.errors.InvalidArgumentError, "exceeds max_batch_size 1024", global_batch_size=4096, ps_config_file=good)
        two = make_config(os.path.join(work, "two_devices.json"), tables, deployed_device_list=[0, 1])
        expect(tf.errors.FailedPreconditionError, "deployed_device_list [0, 1]", global_batch_size=16, ps_config_file=two)
        try:
            hps.Init(global_batch_size=16)
        except TypeError as e:
            assert "ps_config_file" in str(e)
            print("ok: missing kwarg")
        # After the failures nothing is left behind: a correct Init still works.
        assert hps.Init(global_batch_size=1024, ps_config_file=good) == "OK"
        print("init-ok")
        """
        % str(tmp_path)
    )
    assert out.count("ok:") == 4 and "init-ok" in out
