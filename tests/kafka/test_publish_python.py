"""`hierarchical_parameter_server.publish` (ctypes → hps_publish in libhps.so) from NumPy, TensorFlow and
PyTorch arrays, read back by a serving process."""

import os
import sys

import numpy as np
import pytest

from kafka_support import REPO, kafka, make_config, serve, wait_until, write_table  # noqa: F401 (fixtures)
from test_updates import DIM, answers_match, expected_after

# Against a library built from this tree (swift build --product HPSCAPI): HPS_C_LIBRARY and the source package.
if os.environ.get("HPS_C_LIBRARY") and os.path.join(REPO, "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "python"))

import hierarchical_parameter_server as hps


def test_publish_numpy_tensorflow_and_torch_rows(kafka, serve, tmp_path):
    rng = np.random.RandomState(21)
    keys = np.arange(600, dtype=np.int64) * 5
    vectors = rng.uniform(-1, 1, size=(600, DIM)).astype(np.float32)
    path = os.path.join(str(tmp_path), "table")
    write_table(path, keys, vectors)
    server = serve(make_config(tmp_path, "ps.json", kafka.brokers, path, DIM))
    batches = [(keys[:100], rng.uniform(size=(100, DIM)))]  # float64 NumPy: sent as float32
    table = expected_after(keys, vectors, batches[0][0], batches[0][1].astype(np.float32))
    assert hps.publish(kafka.brokers, "m", "t0", *batches[0]) == 100
    import tensorflow as tf
    tf_keys, tf_rows = keys[100:200], rng.uniform(size=(100, DIM)).astype(np.float32)
    assert hps.publish(kafka.brokers, "m", "t0", tf.constant(tf_keys), tf.Variable(tf_rows)) == 100
    table = expected_after(list(table), np.stack(list(table.values())), tf_keys, tf_rows)
    import torch
    th_keys, th_rows = keys[200:300], rng.uniform(size=(100, DIM)).astype(np.float32)
    assert hps.publish(kafka.brokers, "m", "t0", torch.from_numpy(th_keys), torch.from_numpy(th_rows).requires_grad_()) == 100
    table = expected_after(list(table), np.stack(list(table.values())), th_keys, th_rows)
    wait_until(lambda: answers_match(server, table, keys), 60, "published rows visible\n" + server.output())


def test_publish_errors_name_the_argument(kafka):
    ok_keys, ok_rows = np.arange(3), np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="vectors must have shape"):
        hps.publish(kafka.brokers, "m", "t0", ok_keys, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="keys must be integers"):
        hps.publish(kafka.brokers, "m", "t0", ok_keys.astype(np.float32), ok_rows)
    with pytest.raises(ValueError, match="model"):
        hps.publish(kafka.brokers, "bad name", "t0", ok_keys, ok_rows)
    # Nothing listens there: the flush times out and says how much was delivered.
    with pytest.raises(RuntimeError, match=r"HPS_ERROR_KAFKA.*|0 delivered"):
        hps.publish("127.0.0.1:1", "m", "t0", ok_keys, ok_rows, timeout_ms=1500)
