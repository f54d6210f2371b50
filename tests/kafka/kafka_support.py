"""Helpers of the online-update tests: a mock Kafka cluster (`hps kafka-mock`) in its own process, `hps serve`
processes with an update_source, `hps publish`, and lookups over the KServe v2 HTTP protocol. (Not a conftest.py:
tests/python has one that its tests import by name, and pytest runs both directories in one session.)"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
import servers  # noqa: E402
from servers import REPO, hps_binary, wait_until, write_config, write_table  # noqa: E402, F401 (for the tests)


class MockKafka:
    """`hps kafka-mock` in a process of its own; `brokers` is the address it printed."""

    def __init__(self, directory, brokers=1):
        self.log = open(os.path.join(str(directory), "kafka-mock.log"), "w+")
        self.proc = subprocess.Popen([hps_binary(), "kafka-mock", "--brokers", str(brokers)],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("bootstrap.servers="):
            self.proc.kill()
            pytest.fail("hps kafka-mock printed %r" % line)
        self.brokers = line.split("=", 1)[1]

    def stop(self):
        status = servers.terminate(self.proc, 20)
        self.log.close()
        return status


def make_config(directory, name, brokers, table_path, dim, volatile="hash_map", rocksdb=None, node=None,
                redis_address=None, max_batch_size=8192, extra_model=None, update_source=None):
    model = {
        "model": "m",
        "sparse_files": [table_path],
        "embedding_table_names": ["t0"],
        "embedding_vecsize_per_table": [dim],
        "maxnum_catfeature_query_per_table_per_sample": [1],
        "default_value_for_each_table": [-1.0],
        "deployed_device_list": [0],
        "max_batch_size": max_batch_size,
        "gpucache": True,
        "cpu_cache": True,
        "gpucacheper": 0.5,
        "hit_rate_threshold": 1.0,
    }
    model.update(extra_model or {})
    source = {"type": "kafka_message_queue", "brokers": brokers, "poll_timeout_ms": 100,
              "metadata_refresh_interval_ms": 500, "max_batch_size": 8192}
    if node:
        source["node_name"] = node
    source.update(update_source or {})
    config = {"supportlonglong": True, "models": [model], "update_source": source}
    if volatile == "hash_map":
        config["volatile_db"] = {"type": "hash_map", "num_partitions": 4}
    elif volatile == "redis":
        config["volatile_db"] = {"type": "redis_cluster", "address": redis_address, "num_partitions": 6}
    else:
        config["volatile_db"] = {"type": "disabled"}
    if rocksdb:
        config["persistent_db"] = {"type": "rocks_db", "path": rocksdb}
    return write_config(os.path.join(str(directory), name), config)


class Server(servers.Server):
    """`hps serve` with lookups of one table's keys."""

    def lookup(self, keys, dim, model="m", per_request=8192):
        """Vectors of `keys` (int64), as float32 [n, dim], over the binary tensor extension."""
        keys = np.ascontiguousarray(keys, dtype="<i8")
        if len(keys) > per_request:
            return np.concatenate([self.lookup(keys[i:i + per_request], dim, model) for i in range(0, len(keys), per_request)])
        header = {
            "inputs": [
                {"name": "KEYS", "datatype": "INT64", "shape": [1, len(keys)], "parameters": {"binary_data_size": keys.nbytes}},
                {"name": "NUMKEYS", "datatype": "INT32", "shape": [1, 1], "parameters": {"binary_data_size": 4}},
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        }
        head = json.dumps(header).encode()
        body = head + keys.tobytes() + np.array([len(keys)], dtype="<i4").tobytes()
        status, data, headers = self.request("POST", "/v2/models/%s/infer" % model, body, {
            "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
        if status != 200:
            pytest.fail("lookup failed with %d: %s" % (status, data.decode(errors="replace")))
        json_len = int(headers["Inference-Header-Content-Length"])
        return np.frombuffer(data[json_len:], dtype="<f4").reshape(len(keys), dim)


def publish(brokers, model, table, keys, vectors, directory, name="upd", extra=()):
    """`hps publish` of raw key/vector files; returns its stdout."""
    kpath = os.path.join(str(directory), name + ".keys")
    vpath = os.path.join(str(directory), name + ".vectors")
    np.asarray(keys, dtype="<i8").tofile(kpath)
    np.asarray(vectors, dtype="<f4").tofile(vpath)
    out = subprocess.run([hps_binary(), "publish", "--brokers", brokers, "--model", model, "--table", table,
                          "--keys-file", kpath, "--vectors-file", vpath, *extra],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def kafka(tmp_path):
    cluster = MockKafka(tmp_path)
    yield cluster
    cluster.stop()


# Logging at info: the tests read the update source's log lines.
serve = servers.serve_fixture(Server, log_level="info")
