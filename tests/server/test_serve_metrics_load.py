"""`hps serve`: Prometheus text on /metrics checked against the requests sent (parsed with prometheus_client's
own parser), a bounded load test of 64 concurrent clients over HTTP and gRPC, and repeated loads of a model
whose tables live in RocksDB."""

import os
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
import test_serve as base  # noqa: E402
from servers import serve_fixture  # noqa: E402
from test_serve import deployment  # noqa: E402, F401 (fixture)

import tritonclient.grpc as grpcclient
from prometheus_client import parser
from tritonclient.utils import InferenceServerException  # noqa: E402

serve = serve_fixture(grpc=True)


def scrape(server):
    """{(name, frozenset(labels)): value} of every sample on /metrics."""
    with urllib.request.urlopen("http://%s/metrics" % server.metrics_url, timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def distinct_query(deployment, model, rng, per_table):
    """Keys without repeats in a table (so keys = distinct keys on every lookup path); about a third unknown."""
    entry, arrays = deployment.models[model]
    keys, counts, out, known = [], [], [], []
    for t, (table_keys, vectors) in enumerate(arrays):
        n = per_table[t]
        pool = np.concatenate([table_keys, 10**12 + np.arange(len(table_keys) // 2)])
        q = rng.choice(pool, size=n, replace=False).astype(np.int64)
        index = {int(k): i for i, k in enumerate(table_keys)}
        expect = np.full((n, vectors.shape[1]), entry["default_value_for_each_table"][t], dtype=np.float32)
        hits = 0
        for i, k in enumerate(q):
            if int(k) in index:
                expect[i] = vectors[index[int(k)]]
                hits += 1
        keys.append(q)
        counts.append(n)
        out.append(expect.reshape(-1))
        known.append(hits)
    return np.concatenate(keys), np.array(counts, dtype=np.int32), np.concatenate(out), known


def test_metrics_count_the_requests_sent(deployment, serve):
    server = serve(deployment.config)
    http = base.tritonclient_http.InferenceServerClient(server.url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    names = ["sparse_embedding%d" % t for t in range(3)]  # the default table names (no embedding_table_names)
    rng = np.random.RandomState(31)
    sent = {t: {"calls": 0, "keys": 0, "known": 0} for t in range(3)}
    requests = {"http": 0, "grpc": 0}
    for i in range(12):
        per_table = [int(rng.randint(1, 40)), int(rng.randint(0, 40)) if i % 3 else 0, int(rng.randint(1, 40))]
        keys, counts, expect, known = distinct_query(deployment, "ranker", rng, per_table)
        if i % 2:
            out = base.triton_infer(http, "ranker", keys, counts).as_numpy("OUTPUT0")
            requests["http"] += 1
        else:
            inputs = [grpcclient.InferInput("KEYS", [1, len(keys)], "INT64"), grpcclient.InferInput("NUMKEYS", [1, 3], "INT32")]
            inputs[0].set_data_from_numpy(keys.reshape(1, -1))
            inputs[1].set_data_from_numpy(counts.reshape(1, -1))
            out = grpc.infer("ranker", inputs).as_numpy("OUTPUT0")
            requests["grpc"] += 1
        assert out.tobytes() == expect.tobytes()
        for t in range(3):
            if per_table[t] > 0:  # a table with no keys is not looked up
                sent[t]["calls"] += 1
                sent[t]["keys"] += per_table[t]
                sent[t]["known"] += known[t]
    # one failed request of each protocol for a model that is not there, and one bad request for ranker
    with pytest.raises(Exception):
        base.triton_infer(http, "nope", np.array([1]), np.array([1, 0, 0]))
    with pytest.raises(InferenceServerException):
        inputs = [grpcclient.InferInput("KEYS", [1, 1], "INT64"), grpcclient.InferInput("NUMKEYS", [1, 2], "INT32")]
        inputs[0].set_data_from_numpy(np.array([[1]], dtype=np.int64))
        inputs[1].set_data_from_numpy(np.array([[1, 0]], dtype=np.int32))
        grpc.infer("ranker", inputs)

    samples = scrape(server)
    for proto in ("http", "grpc"):
        assert value(samples, "hps_inference_requests_total", model="ranker", protocol=proto, outcome="success") == requests[proto]
        count = value(samples, "hps_inference_request_duration_seconds_count", model="ranker", protocol=proto)
        assert count == requests[proto] + (1 if proto == "grpc" else 0)
    assert value(samples, "hps_inference_requests_total", model="ranker", protocol="grpc", outcome="failure") == 1
    assert value(samples, "hps_inference_requests_total", model="_unknown", protocol="http", outcome="failure") == 1
    for t, name in enumerate(names):
        labels = dict(model="ranker", table=name)
        s = sent[t]
        assert value(samples, "hps_lookups_total", **labels) == s["calls"], (name, s)
        assert value(samples, "hps_lookup_keys_total", **labels) == s["keys"]
        assert value(samples, "hps_lookup_distinct_keys_total", **labels) == s["keys"]
        tiers = {tier: value(samples, "hps_lookup_hits_total", tier=tier, **labels) for tier in ("device_cache", "volatile_db", "persistent_db", "default")}
        assert tiers["default"] == s["keys"] - s["known"], (name, tiers, s)
        assert tiers["device_cache"] + tiers["volatile_db"] + tiers["persistent_db"] == s["known"], (name, tiers, s)
        assert value(samples, "hps_lookup_duration_seconds_count", **labels) == s["calls"]
        assert value(samples, "hps_lookup_duration_seconds_sum", **labels) > 0
        assert value(samples, "hps_backend_errors_total", backend="volatile_db", **labels) == 0
    # the tower model was never asked
    assert value(samples, "hps_lookups_total", model="tower", table="sparse_embedding0") == 0


def test_metrics_of_a_cached_table(deployment, serve):
    """A model with a CPU cache in front of the hash map (`cpu_cache: true`): the first request misses the
    cache and fills it, the same request again hits it; occupancy and capacity are reported."""
    with deployment.editing_config() as document:
        for model in document["models"]:
            model["cpu_cache"] = True
    server = serve(deployment.config)
    http = base.tritonclient_http.InferenceServerClient(server.url)
    keys, counts, expect, known = distinct_query(deployment, "tower", np.random.RandomState(51), [30, 20])
    for _ in range(2):
        assert base.triton_infer(http, "tower", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
    time.sleep(0.2)  # the occupancy is measured off the lookup path
    samples = scrape(server)
    for t in range(2):
        labels = dict(model="tower", table="sparse_embedding%d" % t)
        tiers = {tier: value(samples, "hps_lookup_hits_total", tier=tier, **labels) for tier in ("device_cache", "volatile_db", "persistent_db", "default")}
        # first call: known keys from the hash map, unknown ones the default (and the cache takes both, as in
        # HPS); second call: every key from the cache
        assert tiers == {"device_cache": counts[t], "volatile_db": known[t], "persistent_db": 0, "default": counts[t] - known[t]}, (t, tiers, known)
        assert value(samples, "hps_lookups_total", **labels) == 2
        assert value(samples, "hps_tier_duration_seconds_count", tier="device_cache", **labels) == 2
        capacity = value(samples, "hps_cache_capacity_rows", **labels)
        occupancy = value(samples, "hps_cache_occupancy_rows", **labels)
        assert capacity > 0 and counts[t] <= occupancy <= capacity, (occupancy, capacity, counts)


def test_sixty_four_concurrent_clients(deployment, serve):
    """64 clients (half HTTP, half gRPC), 15 requests each, bounded at 240 s in all: no error, every answer exact."""
    server = serve(deployment.config, "--lookup-threads", "8")
    errors, done = [], []
    start = time.time()

    def worker(seed):
        rng = np.random.RandomState(100 + seed)
        use_grpc = seed % 2 == 1
        client = grpcclient.InferenceServerClient(server.grpc_url) if use_grpc else base.tritonclient_http.InferenceServerClient(server.url)
        for i in range(15):
            if time.time() - start > 200:
                errors.append("client %d: out of time" % seed)
                return
            model = "ranker" if (seed + i) % 2 else "tower"
            keys, counts, expect = deployment.query(model, rng)
            try:
                if use_grpc:
                    inputs = [grpcclient.InferInput("KEYS", [1, len(keys)], "INT64"), grpcclient.InferInput("NUMKEYS", [1, len(counts)], "INT32")]
                    inputs[0].set_data_from_numpy(keys.reshape(1, -1))
                    inputs[1].set_data_from_numpy(counts.reshape(1, -1))
                    out = client.infer(model, inputs).as_numpy("OUTPUT0")
                else:
                    out = base.triton_infer(client, model, keys, counts).as_numpy("OUTPUT0")
                if out.tobytes() != expect.tobytes():
                    errors.append("client %d: wrong answer" % seed)
                done.append(1)
            except Exception as e:  # noqa: BLE001 - every failure counts
                errors.append("client %d: %r" % (seed, e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1, 240 - (time.time() - start)))
    assert not any(t.is_alive() for t in threads), "clients still running after 240 s"
    assert errors == [] and len(done) == 64 * 15, errors[:5]
    samples = scrape(server)
    total = sum(value(samples, "hps_inference_requests_total", model=m, protocol=p, outcome="success")
                for m in ("ranker", "tower") for p in ("http", "grpc"))
    assert total == 64 * 15


def test_reloading_a_rocksdb_backed_model(tmp_path, serve):
    """load → load → unload → load of a model whose tables live in RocksDB: each new generation shares the
    open database (RocksDB lets one opener hold its folder) and answers exactly."""
    deployment = base.Deployment(tmp_path)
    with deployment.editing_config() as document:
        document["volatile_db"] = {"type": "disabled"}
        document["persistent_db"] = {"type": "rocks_db", "path": str(tmp_path / "rocks"), "num_threads": 2}
    server = serve(deployment.config, "--model-control-mode", "explicit")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    http = base.tritonclient_http.InferenceServerClient(server.url)
    rng = np.random.RandomState(41)
    for step in ("load", "load", "unload", "load", "load"):
        if step == "load":
            client.load_model("ranker")
            for _ in range(3):
                keys, counts, expect = deployment.query("ranker", rng)
                assert base.triton_infer(http, "ranker", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
        else:
            client.unload_model("ranker")
            assert not client.is_model_ready("ranker")
    client.load_model("tower")  # a second model into the same open database, beside the first
    keys, counts, expect = deployment.query("tower", rng)
    assert base.triton_infer(http, "tower", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
    keys, counts, expect = deployment.query("ranker", rng)
    assert base.triton_infer(http, "ranker", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
    samples = scrape(server)
    hits = sum(v for (name, labels), v in samples.items() if name == "hps_lookup_hits_total" and ("tier", "persistent_db") in labels)
    assert hits > 0  # answers came from RocksDB
