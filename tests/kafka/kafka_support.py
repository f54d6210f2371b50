"""Helpers of the online-update tests: a mock Kafka cluster (`hps kafka-mock`) in its own process, `hps serve`
processes with an update_source, `hps publish`, and lookups over the KServe v2 HTTP protocol. (Not a conftest.py:
tests/python has one that its tests import by name, and pytest runs both directories in one session.)"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hps_binary():
    for candidate in (os.environ.get("HPS_BIN"), os.path.join(REPO, ".build/release/hps")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no hps binary: run scripts/setup.sh (or set HPS_BIN)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def write_table(path, keys, vectors):
    os.makedirs(path, exist_ok=True)
    np.asarray(keys, dtype="<i8").tofile(os.path.join(path, "key"))
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(path, "emb_vector"))


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
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


class Server:
    """`hps serve` on a free loopback port."""

    def __init__(self, config, directory, name="serve"):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(str(directory), "%s-%d.log" % (name, self.port))
        self.log = open(self.log_path, "w+")
        env = dict(os.environ, HPS_LOG_LEVEL="info")
        # Free ports for gRPC and /metrics too: several servers run at once, and none may take Triton's defaults.
        ports = ["--http-port", str(self.port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
        self.proc = subprocess.Popen([hps_binary(), "serve", "--config", config] + ports,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                pytest.fail("hps serve exited with %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.HTTPError):
                pass
            if time.time() > deadline:
                pytest.fail("hps serve not ready after 120 s:\n" + self.output())
            time.sleep(0.1)

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

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
        req = urllib.request.Request(self.url + "/v2/models/%s/infer" % model, data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              "Inference-Header-Content-Length": str(len(head))})
        try:
            r = urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as e:
            pytest.fail("lookup failed with %d: %s" % (e.code, e.read().decode(errors="replace")))
        with r:
            data = r.read()
            json_len = int(r.headers["Inference-Header-Content-Length"])
        return np.frombuffer(data[json_len:], dtype="<f4").reshape(len(keys), dim)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


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


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while True:
        if predicate():
            return
        if time.time() > deadline:
            pytest.fail("not within %.0f s: %s" % (timeout, what))
        time.sleep(0.1)


@pytest.fixture
def kafka(tmp_path):
    cluster = MockKafka(tmp_path)
    yield cluster
    cluster.stop()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(config, name="serve"):
        server = Server(config, tmp_path, name)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
