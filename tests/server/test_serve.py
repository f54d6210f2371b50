"""`hps serve`: the real server on a free loopback port, driven with tritonclient.http (binary tensor data,
its default) and plain JSON over urllib. Answers are checked bit-exactly against the table files."""

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
from servers import serve_fixture, write_config, write_table  # noqa: E402

import tritonclient.http as tritonclient_http

serve = serve_fixture()


def make_model(directory, name, dims, seed, rows=200, max_batch_size=64, per_sample=4):
    rng = np.random.RandomState(seed)
    paths, arrays = [], []
    for t, dim in enumerate(dims):
        keys = np.arange(rows, dtype=np.int64) * 3 + t
        vectors = rng.uniform(-1, 1, size=(rows, dim)).astype(np.float32)
        path = os.path.join(directory, "%s_t%d" % (name, t))
        write_table(path, keys, vectors)
        paths.append(path)
        arrays.append((keys, vectors))
    entry = {
        "model": name,
        "sparse_files": paths,
        "embedding_vecsize_per_table": list(dims),
        "maxnum_catfeature_query_per_table_per_sample": [per_sample] * len(dims),
        "default_value_for_each_table": [0.5 + t for t in range(len(dims))],
        "deployed_device_list": [0],
        "max_batch_size": max_batch_size,
        "gpucache": True,
        "gpucacheper": 0.5,
        "hit_rate_threshold": 1.0,
        "num_of_worker_buffer_in_pool": 4,
    }
    return entry, arrays


def table_query(table_keys, vectors, default, rng, n, candidates):
    """`n` keys drawn from `candidates` (the table's keys, then unknown keys 10**12 + i) → (keys, the rows
    OUTPUT0 holds for them, flattened)."""
    chosen = rng.randint(0, candidates, size=n)
    q = np.where(chosen < len(table_keys), table_keys[np.minimum(chosen, len(table_keys) - 1)], 10**12 + chosen)
    index = {int(k): i for i, k in enumerate(table_keys)}
    expect = np.full((n, vectors.shape[1]), default, dtype=np.float32)
    for i, k in enumerate(q):
        if int(k) in index:
            expect[i] = vectors[index[int(k)]]
    return q.astype(np.int64), expect.reshape(-1)


class Deployment:
    """Two models (3 tables and 2 tables) in one config, and the expected answers from their files."""

    def __init__(self, directory):
        self.directory = str(directory)
        m1, a1 = make_model(self.directory, "ranker", [8, 16, 4], seed=1)
        m2, a2 = make_model(self.directory, "tower", [32, 1], seed=2)
        self.models = {"ranker": (m1, a1), "tower": (m2, a2)}
        self.config = write_config(os.path.join(self.directory, "ps.json"), {"supportlonglong": True, "models": [m1, m2]})

    @contextlib.contextmanager
    def editing_config(self):
        """The config's JSON document, written back when the `with` block ends."""
        with open(self.config) as f:
            document = json.load(f)
        yield document
        write_config(self.config, document)

    def query(self, model, rng, per_table=None):
        """Random keys per table (about a quarter unknown) → (KEYS, NUMKEYS, expected OUTPUT0)."""
        entry, arrays = self.models[model]
        keys, counts, out = [], [], []
        for t, (table_keys, vectors) in enumerate(arrays):
            n = per_table if per_table is not None else rng.randint(0, 40)
            candidates = len(table_keys) * 4 // 3 + 1
            q, expect = table_query(table_keys, vectors, entry["default_value_for_each_table"][t], rng, n, candidates)
            keys.append(q)
            counts.append(n)
            out.append(expect)
        return np.concatenate(keys), np.array(counts, dtype=np.int32), np.concatenate(out)


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


def triton_infer(client, model, keys, counts, version=""):
    inputs = [
        tritonclient_http.InferInput("KEYS", [1, len(keys)], "INT64"),
        tritonclient_http.InferInput("NUMKEYS", [1, len(counts)], "INT32"),
    ]
    inputs[0].set_data_from_numpy(keys.reshape(1, -1).astype(np.int64))
    inputs[1].set_data_from_numpy(counts.reshape(1, -1).astype(np.int32))
    result = client.infer(model, inputs, model_version=version)
    return result


def json_infer_body(keys, counts, **extra):
    body = {
        "inputs": [
            {"name": "KEYS", "datatype": "INT64", "shape": [1, len(keys)], "data": [int(k) for k in keys]},
            {"name": "NUMKEYS", "datatype": "INT32", "shape": [1, len(counts)], "data": [int(c) for c in counts]},
        ]
    }
    body.update(extra)
    return body


class SteadyTraffic:
    """Lookups of `model` from a thread of their own while the `with` block runs, each answer checked against
    the table files: `ok` counts the right ones, `failed` holds every other outcome. `connect()` makes the
    thread's client, `infer(client, model, keys, counts)` sends one request."""

    def __init__(self, deployment, model, seed, connect, infer):
        self.ok, self.failed = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(deployment, model, seed, connect, infer))

    def _run(self, deployment, model, seed, connect, infer):
        client = connect()
        rng = np.random.RandomState(seed)
        while not self._stop.is_set():
            keys, counts, expect = deployment.query(model, rng)
            try:
                out = infer(client, model, keys, counts).as_numpy("OUTPUT0")
                if out.tobytes() == expect.tobytes():
                    self.ok += 1
                else:
                    self.failed.append("wrong answer")
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failed.append(repr(e))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_health_metadata_and_config(deployment, serve):
    server = serve(deployment.config)
    client = tritonclient_http.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "hps" and {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    for name in ("ranker", "tower"):
        assert client.is_model_ready(name)
        m = client.get_model_metadata(name)
        assert m["name"] == name and m["versions"] == ["1"] and m["platform"] == "hps"
        assert m["inputs"] == [
            {"name": "KEYS", "datatype": "INT64", "shape": [1, -1]},
            {"name": "NUMKEYS", "datatype": "INT32", "shape": [1, -1]},
        ]
        assert m["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1]}]
        assert client.get_model_metadata(name, model_version="1") == m
        config = client.get_model_config(name)
        assert config["name"] == name and [i["name"] for i in config["input"]] == ["KEYS", "NUMKEYS"]
    index = client.get_model_repository_index()
    assert sorted((e["name"], e["state"]) for e in index) == [("ranker", "READY"), ("tower", "READY")]


def test_tritonclient_binary_lookups_are_bit_exact(deployment, serve):
    server = serve(deployment.config)
    client = tritonclient_http.InferenceServerClient(server.url)
    rng = np.random.RandomState(7)
    for model in ("ranker", "tower", "ranker", "tower"):
        keys, counts, expect = deployment.query(model, rng)
        result = triton_infer(client, model, keys, counts)
        out = result.as_numpy("OUTPUT0")
        assert out.dtype == np.float32 and out.shape == expect.shape
        assert out.tobytes() == expect.tobytes()
        response = result.get_response()
        assert response["model_name"] == model and response["model_version"] == "1"
    # version 1 in the path, and an empty request (no keys at all)
    keys, counts, expect = deployment.query("tower", rng, per_table=0)
    out = triton_infer(client, "tower", keys, counts, version="1").as_numpy("OUTPUT0")
    assert out.size == 0


def test_json_lookups_are_bit_exact(deployment, serve):
    server = serve(deployment.config)
    rng = np.random.RandomState(8)
    keys, counts, expect = deployment.query("ranker", rng, per_table=25)
    status, body, _ = server.post_json("/v2/models/ranker/infer", json_infer_body(keys, counts, id="req-1"))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["model_name"] == "ranker" and answer["model_version"] == "1" and answer["id"] == "req-1"
    (output,) = answer["outputs"]
    assert output["name"] == "OUTPUT0" and output["datatype"] == "FP32" and output["shape"] == [expect.size]
    assert np.array(output["data"], dtype=np.float64).astype(np.float32).tobytes() == expect.tobytes()
    # nested data and a binary output asked for by a JSON request
    body = json_infer_body(keys, counts, outputs=[{"name": "OUTPUT0", "parameters": {"binary_data": True}}])
    body["inputs"][0]["data"] = [[int(k) for k in keys]]
    status, raw, headers = server.post_json("/v2/models/ranker/versions/1/infer", body)
    assert status == 200, raw
    n = int(headers["Inference-Header-Content-Length"])
    header = json.loads(raw[:n])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == expect.size * 4
    assert raw[n:] == expect.tobytes()


def binary_body(keys, counts, keys_dtype="<i8", keys_type="INT64", keys_shape=None, counts_shape=None):
    kb = np.asarray(keys).astype(keys_dtype).tobytes()
    cb = np.asarray(counts).astype("<i4").tobytes()
    header = json.dumps({
        "inputs": [
            {"name": "KEYS", "datatype": keys_type, "shape": keys_shape or [1, len(keys)], "parameters": {"binary_data_size": len(kb)}},
            {"name": "NUMKEYS", "datatype": "INT32", "shape": counts_shape or [1, len(counts)], "parameters": {"binary_data_size": len(cb)}},
        ],
        "parameters": {"binary_data_output": True},
    }).encode()
    return header + kb + cb, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def test_bad_requests_get_400_or_404_naming_the_problem(deployment, serve):
    server = serve(deployment.config, "--max-request-bytes", "100000")
    keys = np.array([0, 3, 6, 1, 4, 2], dtype=np.int64)
    counts = np.array([3, 2, 1], dtype=np.int32)
    cases = []
    cases.append(("/v2/models/nope/infer", json.dumps(json_infer_body(keys, counts)).encode(), {}, 404, "unknown model"))
    cases.append(("/v2/models/ranker/versions/2/infer", json.dumps(json_infer_body(keys, counts)).encode(), {}, 404, "version"))
    wrong = json_infer_body(keys, counts)
    wrong["inputs"][0]["datatype"] = "FP32"
    cases.append(("/v2/models/ranker/infer", json.dumps(wrong).encode(), {}, 400, "datatype"))
    wrong = json_infer_body(keys, counts)
    wrong["inputs"][0]["shape"] = [len(keys)]
    cases.append(("/v2/models/ranker/infer", json.dumps(wrong).encode(), {}, 400, "shape"))
    wrong = json_infer_body(keys, counts)
    wrong["inputs"][0]["shape"] = [1, len(keys) + 1]
    cases.append(("/v2/models/ranker/infer", json.dumps(wrong).encode(), {}, 400, "values"))
    cases.append(("/v2/models/ranker/infer", json.dumps(json_infer_body(keys, [3, 2, 2])).encode(), {}, 400, "adds up"))
    cases.append(("/v2/models/ranker/infer", json.dumps(json_infer_body(keys, [3, 3])).encode(), {}, 400, "table"))
    cases.append(("/v2/models/ranker/infer", json.dumps(json_infer_body(keys, [3, -1, 4])).encode(), {}, 400, "negative"))
    many = np.arange(300, dtype=np.int64)  # max_batch_size 64 × 4 keys per sample = 256 per table
    cases.append(("/v2/models/ranker/infer", json.dumps(json_infer_body(many, [300, 0, 0])).encode(), {}, 400, "allows"))
    fraction = json_infer_body([1], [1, 0, 0])
    fraction["inputs"][0]["data"] = [1.5]
    cases.append(("/v2/models/ranker/infer", json.dumps(fraction).encode(), {}, 400, "integers"))
    cases.append(("/v2/models/ranker/infer", json.dumps({"inputs": [json_infer_body(keys, counts)["inputs"][0]]}).encode(), {}, 400, "NUMKEYS"))
    extra = json_infer_body(keys, counts)
    extra["inputs"].append({"name": "DENSE", "datatype": "FP32", "shape": [1, 1], "data": [1.0]})
    cases.append(("/v2/models/ranker/infer", json.dumps(extra).encode(), {}, 400, "DENSE"))
    cases.append(("/v2/models/ranker/infer", json.dumps(json_infer_body(keys, counts, outputs=[{"name": "OUT9"}])).encode(), {}, 400, "OUT9"))
    cases.append(("/v2/models/ranker/infer", b"{not json", {}, 400, "malformed"))
    cases.append(("/v2/models/ranker/infer", b"", {}, 400, "malformed"))
    cases.append(("/v2/models/ranker/infer", b"[1,2,3]", {}, 400, "malformed"))
    cases.append(("/v2/models/ranker/infer", b"\xff\xfe\x00garbage", {}, 400, "malformed"))
    body, headers = binary_body(keys, counts)
    cases.append(("/v2/models/ranker/infer", body[:-3], headers, 400, "binary"))
    cases.append(("/v2/models/ranker/infer", body + b"xx", headers, 400, "belong to no input"))
    cases.append(("/v2/models/ranker/infer", body, dict(headers, **{"Inference-Header-Content-Length": "999999"}), 400, "Inference-Header-Content-Length"))
    cases.append(("/v2/models/ranker/infer", body, dict(headers, **{"Inference-Header-Content-Length": "abc"}), 400, "Inference-Header-Content-Length"))
    body32, headers32 = binary_body(keys, counts, keys_dtype="<i4", keys_type="INT32")
    cases.append(("/v2/models/ranker/infer", body32, headers32, 400, "datatype"))
    cases.append(("/v2/models/ranker/infer", b"[" * 200000, {}, 413, "max-request-bytes"))
    for path, body, headers, status, words in cases:
        got, answer, _ = server.request("POST", path, body, dict({"Content-Type": "application/json"}, **headers))
        assert got == status, (path, body[:200], got, answer[:300])
        message = json.loads(answer)["error"]
        assert words.lower() in message.lower(), (words, message)
    for path, status in [("/v2/models/nope", 404), ("/v2/models/nope/ready", 404), ("/v2/models/nope/config", 404),
                         ("/v2/models/ranker/versions/3", 404)]:
        got, answer, _ = server.get(path)
        assert got == status and json.loads(answer)["error"], (path, got, answer)
    # the server still answers, and correctly
    client = tritonclient_http.InferenceServerClient(server.url)
    k, c, expect = deployment.query("ranker", np.random.RandomState(3))
    assert triton_infer(client, "ranker", k, c).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
    with pytest.raises(Exception, match="unknown model"):
        triton_infer(client, "nope", k, c)
    # load and unload need --model-control-mode explicit
    assert server.post_json("/v2/repository/models/ranker/unload", {})[0] == 400


def test_load_unload_load_under_steady_traffic(deployment, serve):
    server = serve(deployment.config, "--model-control-mode", "explicit")
    client = tritonclient_http.InferenceServerClient(server.url)
    assert not client.is_model_ready("ranker") and not client.is_model_ready("tower")
    assert server.post_json("/v2/models/tower/infer", json_infer_body([1], [1, 0]))[0] == 404
    client.load_model("tower")
    connect = functools.partial(tritonclient_http.InferenceServerClient, server.url)
    with SteadyTraffic(deployment, "tower", 11, connect, triton_infer) as traffic:
        time.sleep(0.3)
        rng = np.random.RandomState(12)
        for step in ("load", "unload", "load"):
            if step == "load":
                client.load_model("ranker")
                keys, counts, expect = deployment.query("ranker", rng)
                assert triton_infer(client, "ranker", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
            else:
                client.unload_model("ranker")
                assert not client.is_model_ready("ranker")
                status, body, _ = server.post_json("/v2/models/ranker/infer", json_infer_body([1], [1, 0, 0]))
                assert status == 404 and "not loaded" in json.loads(body)["error"]
            time.sleep(0.3)
        client.load_model("tower")  # reload the model the stream is using: a swap under its requests
        time.sleep(0.3)
    assert traffic.failed == [] and traffic.ok > 10, (traffic.ok, traffic.failed)
    with pytest.raises(Exception, match="unknown model"):
        client.load_model("nope")


def test_concurrent_clients(deployment, serve):
    server = serve(deployment.config)
    errors = []

    def worker(seed):
        client = tritonclient_http.InferenceServerClient(server.url)
        rng = np.random.RandomState(seed)
        for i in range(50):
            model = "ranker" if (seed + i) % 2 else "tower"
            keys, counts, expect = deployment.query(model, rng)
            try:
                out = triton_infer(client, model, keys, counts).as_numpy("OUTPUT0")
                if out.tobytes() != expect.tobytes():
                    errors.append("wrong answer")
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads) and time.time() - start < 300
    assert errors == []


def test_bearer_token(deployment, serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = serve(deployment.config, "--auth-token-file", str(token))
    assert server.get("/v2/health/live")[0] == 200
    status, body, _ = server.get("/v2")
    assert status == 401 and "token" in json.loads(body)["error"]
    assert server.get("/v2", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert server.get("/v2", headers={"Authorization": "Bearer s3cret"})[0] == 200
    client = tritonclient_http.InferenceServerClient(server.url)
    keys, counts, expect = deployment.query("tower", np.random.RandomState(5))
    inputs = [tritonclient_http.InferInput("KEYS", [1, len(keys)], "INT64"), tritonclient_http.InferInput("NUMKEYS", [1, 2], "INT32")]
    inputs[0].set_data_from_numpy(keys.reshape(1, -1))
    inputs[1].set_data_from_numpy(counts.reshape(1, -1))
    out = client.infer("tower", inputs, headers={"Authorization": "Bearer s3cret"}).as_numpy("OUTPUT0")
    assert out.tobytes() == expect.tobytes()


def test_sigterm_and_sigint_exit_zero(deployment, serve):
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = serve(deployment.config)
        keys, counts, _ = deployment.query("ranker", np.random.RandomState(1))
        assert server.post_json("/v2/models/ranker/infer", json_infer_body(keys, counts))[0] == 200
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=30) == 0, server.output()
