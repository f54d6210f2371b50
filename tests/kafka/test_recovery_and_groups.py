"""Online updates across restarts and across several serving processes: offsets committed only after the
databases took the rows (a consumer killed with SIGKILL loses nothing), local databases on every node, and a
shared Redis Cluster written once per cluster."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

from kafka_support import hps_binary, kafka, make_config, publish, serve, wait_until, write_table  # noqa: F401 (fixtures)
from test_updates import DIM, answers_match, base_table, expected_after


def applied_keys(log, group_prefix):
    """Keys a consumer group reported applied in its log lines."""
    return sum(int(n) for n in re.findall(r"Kafka update source %s\S*: applied (\d+) keys" % re.escape(group_prefix), log))


@pytest.mark.parametrize("volatile", ["disabled", "hash_map"])
def test_sigkill_mid_stream_loses_no_update(kafka, serve, tmp_path, volatile):
    path, keys, vectors = base_table(tmp_path, rows=20000)
    # Small batches and a commit after every message: the stream takes a while, and offsets move often.
    config = make_config(tmp_path, "ps.json", kafka.brokers, path, DIM, volatile=volatile, rocksdb=str(tmp_path / "rocks"),
                         node="n1", update_source={"max_batch_size": 256, "max_commit_interval": 1})
    server = serve(config, name="first")
    assert np.array_equal(server.lookup(keys[:2000], DIM), vectors[:2000])  # cached
    rng = np.random.RandomState(7)
    rounds = []
    for r in range(2):  # the same keys twice: the second round must win everywhere
        values = rng.uniform(-1, 1, size=(len(keys), DIM)).astype(np.float32)
        publish(kafka.brokers, "m", "t0", keys, values, tmp_path, name="r%d" % r, extra=("--send-buffer-size", "2048"))
        rounds.append(values)
    wait_until(lambda: applied_keys(server.output(), "hps.local") > 0, 60, "a first batch applied\n" + server.output())
    if os.environ.get("HPS_TEST_NO_KILL"):
        time.sleep(5)
    server.kill()
    first = applied_keys(server.output(), "hps.local")
    assert first < 2 * len(keys), "the consumer finished before it was killed; make the stream longer"
    again = serve(config, name="second")
    table = expected_after(keys, vectors, keys, rounds[1])
    wait_until(lambda: answers_match(again, table, keys), 120, "every update after the restart\n" + again.output())
    if volatile == "disabled":
        # Resumed from the committed offsets, not from the beginning.
        assert "read from their beginning" not in again.output()
        assert applied_keys(again.output(), "hps.local") < 2 * len(keys) or first == 0
    else:
        # The hash map is reloaded from the table files at start: every retained update is applied again.
        assert "read from their beginning" in again.output()


def test_two_servers_with_local_databases_both_receive_every_update(kafka, serve, tmp_path):
    path, keys, vectors = base_table(tmp_path, rows=3000)
    a = serve(make_config(tmp_path, "a.json", kafka.brokers, path, DIM, node="a"), name="a")
    b = serve(make_config(tmp_path, "b.json", kafka.brokers, path, DIM, node="b"), name="b")
    upd_keys = keys[::3]
    upd_values = np.random.RandomState(9).uniform(size=(len(upd_keys), DIM)).astype(np.float32)
    publish(kafka.brokers, "m", "t0", upd_keys, upd_values, tmp_path)
    table = expected_after(keys, vectors, upd_keys, upd_values)
    wait_until(lambda: answers_match(a, table, keys), 60, "updates on server a\n" + a.output())
    wait_until(lambda: answers_match(b, table, keys), 60, "updates on server b\n" + b.output())
    assert "hps.local.a" in a.output() and "hps.local.b" in b.output()


# A Redis Cluster of 3 masters on loopback ports, as the Swift tests start one.

def free_ports(n):
    """`n` ports below 55536 whose cluster bus port (+10000) is free too (redis-server refuses higher ones)."""
    import random
    ports = []
    while len(ports) < n:
        port = random.randint(20000, 55535)
        ok = True
        for candidate in (port, port + 10000):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    ok = False
        if ok and port not in ports:
            ports.append(port)
    return ports


def start_redis_nodes(directory, ports):
    """redis-server in cluster mode on each port; [] when a node did not answer PING within 30 s."""
    procs = []
    for port in ports:
        log = open(os.path.join(directory, "redis-%d.log" % port), "w")
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(directory, "nodes-%d.conf" % port), "--cluster-node-timeout", "5000",
             "--dir", directory, "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT))
    for port, proc in zip(ports, procs):
        deadline = time.time() + 30
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
            if proc.poll() is not None or time.time() > deadline:  # e.g. the port was taken meanwhile
                for p in procs:
                    p.terminate()
                    p.wait()
                return []
            time.sleep(0.1)
    return procs


@pytest.fixture
def redis_cluster():
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.skip("redis-server and redis-cli are needed (Debian package redis-server)")
    directory = tempfile.mkdtemp(prefix="hps-kafka-redis-")
    procs = []
    try:
        logs = ""
        for _ in range(3):
            ports = free_ports(3)
            procs = start_redis_nodes(directory, ports)
            if procs:
                break
            for name in os.listdir(directory):
                if name.endswith(".log"):
                    logs += open(os.path.join(directory, name)).read()[-500:]
                os.remove(os.path.join(directory, name))
        assert procs, "redis-server did not start:\n" + logs
        subprocess.run(["redis-cli", "--cluster", "create", *["127.0.0.1:%d" % p for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.time() + 30
        while not all("cluster_state:ok" in subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                                           capture_output=True, text=True).stdout for p in ports):
            assert time.time() < deadline, "the Redis cluster did not become ready"
            time.sleep(0.2)
        yield ",".join("127.0.0.1:%d" % p for p in ports)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_shared_redis_cluster_receives_each_update_once(kafka, serve, tmp_path, redis_cluster):
    path, keys, vectors = base_table(tmp_path, rows=3000)
    a = serve(make_config(tmp_path, "a.json", kafka.brokers, path, DIM, volatile="redis", redis_address=redis_cluster, node="a"), name="a")
    b = serve(make_config(tmp_path, "b.json", kafka.brokers, path, DIM, volatile="redis", redis_address=redis_cluster, node="b"), name="b")
    # A beacon (header-only message) creates the topic; then both servers split its 4 partitions in the shared
    # group before anything is published (no rebalance re-delivers a message).
    beacon = os.path.join(str(tmp_path), "beacon.msg")
    with open(beacon, "wb") as f:
        f.write(np.array([0x52544348, DIM * 4], dtype="<u4").tobytes())
    subprocess.run([hps_binary(), "publish", "--brokers", kafka.brokers, "--model", "m", "--table", "t0", "--raw-message", beacon],
                   check=True, capture_output=True, timeout=60)

    def shared_partitions(log):
        counts = re.findall(r"hps\.shared: assigned (\d+) partition", log)
        return int(counts[-1]) if counts else 0

    wait_until(lambda: shared_partitions(a.output()) > 0 and shared_partitions(b.output()) > 0
               and shared_partitions(a.output()) + shared_partitions(b.output()) == 4, 60,
               "both servers assigned\n" + a.output() + b.output())
    upd_keys = np.concatenate([keys[::4], np.arange(500, dtype=np.int64) + 50_000_000])
    upd_values = np.random.RandomState(11).uniform(size=(len(upd_keys), DIM)).astype(np.float32)
    publish(kafka.brokers, "m", "t0", upd_keys, upd_values, tmp_path)
    table = expected_after(keys, vectors, upd_keys, upd_values)
    probe = np.concatenate([keys, upd_keys[-500:]])
    wait_until(lambda: answers_match(a, table, probe), 60, "updates on server a\n" + a.output())
    wait_until(lambda: answers_match(b, table, probe), 60, "updates on server b\n" + b.output())
    # Into Redis once: the shared group's members together applied each row once ...
    wait_until(lambda: applied_keys(a.output(), "hps.shared") + applied_keys(b.output(), "hps.shared") >= len(upd_keys), 10,
               "shared group log lines")
    assert applied_keys(a.output(), "hps.shared") + applied_keys(b.output(), "hps.shared") == len(upd_keys)
    # ... and each node's local group refreshed its own cache with every row.
    wait_until(lambda: applied_keys(a.output(), "hps.local.a") >= len(upd_keys) and applied_keys(b.output(), "hps.local.b") >= len(upd_keys),
               10, "local group log lines")
