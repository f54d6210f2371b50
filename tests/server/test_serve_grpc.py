"""`hps serve` over gRPC: the real server on free loopback ports, driven with tritonclient.grpc (raw tensor
contents, its default) and with the protocol's own stub for typed contents and malformed requests. Answers
are checked bit-exactly against the table files (the same deployment as test_serve.py)."""

import functools
import json
import os
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
import test_serve as base  # noqa: E402
from servers import serve_fixture  # noqa: E402
from test_serve import deployment  # noqa: E402, F401 (fixture)

import tritonclient.grpc as grpcclient
import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

serve = serve_fixture(grpc=True)


def grpc_infer(client, model, keys, counts, version="", headers=None):
    inputs = [
        grpcclient.InferInput("KEYS", [1, len(keys)], "INT64"),
        grpcclient.InferInput("NUMKEYS", [1, len(counts)], "INT32"),
    ]
    inputs[0].set_data_from_numpy(np.asarray(keys, dtype=np.int64).reshape(1, -1))
    inputs[1].set_data_from_numpy(np.asarray(counts, dtype=np.int32).reshape(1, -1))
    return client.infer(model, inputs, model_version=version, headers=headers)


def raw_request(model, keys, counts, typed=False, **changes):
    """A ModelInferRequest as tritonclient.grpc builds it (raw_input_contents), or with typed contents."""
    keys = np.asarray(keys, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int32)
    request = service_pb2.ModelInferRequest(model_name=model, id=changes.pop("id", ""))
    k = request.inputs.add(name="KEYS", datatype="INT64", shape=[1, len(keys)])
    c = request.inputs.add(name="NUMKEYS", datatype="INT32", shape=[1, len(counts)])
    if typed:
        k.contents.int64_contents.extend(int(x) for x in keys)
        c.contents.int_contents.extend(int(x) for x in counts)
    else:
        request.raw_input_contents.extend([keys.astype("<i8").tobytes(), counts.astype("<i4").tobytes()])
    return request


def test_health_metadata_config_and_index(deployment, serve):
    server = serve(deployment.config)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "hps" and {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    for name, dims in (("ranker", [8, 16, 4]), ("tower", [32, 1])):
        assert client.is_model_ready(name) and client.is_model_ready(name, "1") and not client.is_model_ready(name, "2")
        m = client.get_model_metadata(name, as_json=True)
        assert m["name"] == name and m["versions"] == ["1"] and m["platform"] == "hps"
        assert [(t["name"], t["datatype"], t["shape"]) for t in m["inputs"]] == [("KEYS", "INT64", ["1", "-1"]), ("NUMKEYS", "INT32", ["1", "-1"])]
        assert [(t["name"], t["datatype"], t["shape"]) for t in m["outputs"]] == [("OUTPUT0", "FP32", ["-1"])]
        config = client.get_model_config(name).config
        assert config.name == name and config.max_batch_size == 64 and config.backend == "hps"
        assert [i.name for i in config.input] == ["KEYS", "NUMKEYS"] and config.output[0].name == "OUTPUT0"
        assert config.parameters["embedding_vecsize_per_table"].string_value == ",".join(map(str, dims))
    assert not client.is_model_ready("nope")
    index = client.get_model_repository_index(as_json=True)["models"]
    assert sorted((e["name"], e["state"]) for e in index) == [("ranker", "READY"), ("tower", "READY")]
    with pytest.raises(InferenceServerException, match="unknown model") as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_config("nope")


def test_tritonclient_grpc_lookups_are_bit_exact(deployment, serve):
    server = serve(deployment.config)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    rng = np.random.RandomState(17)
    for model in ("ranker", "tower", "ranker", "tower"):
        keys, counts, expect = deployment.query(model, rng)
        result = grpc_infer(client, model, keys, counts)
        out = result.as_numpy("OUTPUT0")
        assert out.dtype == np.float32 and out.shape == expect.shape
        assert out.tobytes() == expect.tobytes()
        response = result.get_response()
        assert response.model_name == model and response.model_version == "1"
    keys, counts, expect = deployment.query("tower", rng, per_table=0)
    assert grpc_infer(client, "tower", keys, counts, version="1").as_numpy("OUTPUT0").size == 0
    # typed contents instead of raw_input_contents, through the protocol's own stub; the id comes back
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    keys, counts, expect = deployment.query("ranker", rng, per_table=30)
    response = stub.ModelInfer(raw_request("ranker", keys, counts, typed=True, id="req-7"), timeout=30)
    assert response.id == "req-7" and response.outputs[0].name == "OUTPUT0" and list(response.outputs[0].shape) == [expect.size]
    assert response.raw_output_contents[0] == expect.tobytes()
    # the same request over HTTP gives the same bytes
    http = base.tritonclient_http.InferenceServerClient(server.url)
    assert base.triton_infer(http, "ranker", keys, counts).as_numpy("OUTPUT0").tobytes() == response.raw_output_contents[0]


def test_bad_requests_get_invalid_argument_or_not_found(deployment, serve):
    server = serve(deployment.config, "--max-request-bytes", "100000")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    keys = np.array([0, 3, 6, 1, 4, 2], dtype=np.int64)
    counts = np.array([3, 2, 1], dtype=np.int32)
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = []
    cases.append((raw_request("nope", keys, counts), NOT_FOUND, "unknown model"))
    r = raw_request("ranker", keys, counts)
    r.model_version = "2"
    cases.append((r, NOT_FOUND, "version"))
    r = raw_request("ranker", keys, counts)
    r.inputs[0].datatype = "FP32"
    cases.append((r, INVALID, "datatype"))
    r = raw_request("ranker", keys, counts)
    del r.inputs[0].shape[:]
    r.inputs[0].shape.extend([len(keys)])
    cases.append((r, INVALID, "shape"))
    r = raw_request("ranker", keys, counts)
    r.inputs[0].shape[1] = len(keys) + 1
    cases.append((r, INVALID, "bytes"))
    r = raw_request("ranker", keys, counts, typed=True)
    r.inputs[0].shape[1] = len(keys) + 1
    cases.append((r, INVALID, "int64_contents"))
    cases.append((raw_request("ranker", keys, [3, 2, 2]), INVALID, "adds up"))
    cases.append((raw_request("ranker", keys, [3, 3]), INVALID, "table"))
    cases.append((raw_request("ranker", keys, [3, -1, 4]), INVALID, "negative"))
    cases.append((raw_request("ranker", np.arange(300), [300, 0, 0]), INVALID, "allows"))
    r = raw_request("ranker", keys, counts)
    del r.raw_input_contents[1]
    cases.append((r, INVALID, "raw_input_contents"))
    r = raw_request("ranker", keys, counts)
    del r.inputs[1]
    del r.raw_input_contents[1]
    cases.append((r, INVALID, "NUMKEYS"))
    r = raw_request("ranker", keys, counts)
    r.inputs.add(name="DENSE", datatype="FP32", shape=[1, 1])
    r.raw_input_contents.append(b"\0\0\0\0")
    cases.append((r, INVALID, "DENSE"))
    r = raw_request("ranker", keys, counts)
    r.outputs.add(name="OUT9")
    cases.append((r, INVALID, "OUT9"))
    for request, code, words in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=30)
        assert info.value.code() == code and words.lower() in info.value.details().lower(), (words, info.value.code(), info.value.details())
    # a message over --max-request-bytes, and bytes that are no protobuf message
    big = raw_request("ranker", np.arange(20000), [20000, 0, 0])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(big, timeout=30)
    # grpc-swift's transport refuses the message before it is read whole by resetting the stream
    assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED), info.value
    garbage = grpc.insecure_channel(server.grpc_url).unary_unary(
        "/inference.GRPCInferenceService/ModelInfer", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        garbage(b"\xff\xfe\x00garbage\x0a\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in info.value.details(), info.value
    # load and unload need --model-control-mode explicit
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="explicit") as info:
        client.unload_model("ranker")
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    # the server still answers, and correctly
    k, c, expect = deployment.query("ranker", np.random.RandomState(3))
    assert grpc_infer(client, "ranker", k, c).as_numpy("OUTPUT0").tobytes() == expect.tobytes()


def test_http_and_grpc_refuse_the_same_bad_input_in_the_same_words(deployment, serve):
    server = serve(deployment.config)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    keys = [0, 3, 6, 1, 4, 2]
    good = ("KEYS", "INT64", [1, 6], keys)

    def numkeys(counts):
        return ("NUMKEYS", "INT32", [1, len(counts)], counts)

    # (inputs as (name, datatype, shape, values), outputs asked for), each sent as JSON and as a ModelInferRequest
    cases = [
        ([("KEYS", "FP32", [1, 6], keys), numkeys([3, 2, 1])], []),
        ([("KEYS", "INT64", [6], keys), numkeys([3, 2, 1])], []),
        ([good, good], []),
        ([good], []),
        ([good], ["OUT9"]),
        ([good, numkeys([3, 2, 2])], []),
        ([good, numkeys([3, 3])], []),
        ([good, numkeys([3, -1, 4])], []),
        ([good, numkeys([3, 2, 1])], ["OUT9"]),
    ]
    for inputs, outputs in cases:
        body = {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": values}
                           for name, datatype, shape, values in inputs],
                "outputs": [{"name": name} for name in outputs]}
        request = service_pb2.ModelInferRequest(model_name="ranker")
        for name, datatype, shape, values in inputs:
            request.inputs.add(name=name, datatype=datatype, shape=shape)
            request.raw_input_contents.append(np.array(values, dtype="<i8" if name == "KEYS" else "<i4").tobytes())
        for name in outputs:
            request.outputs.add(name=name)
        status, answer, _ = server.post_json("/v2/models/ranker/infer", body)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=30)
        assert status == 400 and info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (inputs, outputs)
        assert json.loads(answer)["error"] == info.value.details()


def test_load_unload_load_under_steady_grpc_traffic(deployment, serve):
    server = serve(deployment.config, "--model-control-mode", "explicit")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert not client.is_model_ready("ranker") and not client.is_model_ready("tower")
    assert sorted(e["state"] for e in client.get_model_repository_index(as_json=True)["models"]) == ["UNAVAILABLE"] * 2
    client.load_model("tower")
    connect = functools.partial(grpcclient.InferenceServerClient, server.grpc_url)
    with base.SteadyTraffic(deployment, "tower", 21, connect, grpc_infer) as traffic:
        time.sleep(0.3)
        rng = np.random.RandomState(22)
        for step in ("load", "unload", "load"):
            if step == "load":
                client.load_model("ranker")
                keys, counts, expect = deployment.query("ranker", rng)
                assert grpc_infer(client, "ranker", keys, counts).as_numpy("OUTPUT0").tobytes() == expect.tobytes()
            else:
                client.unload_model("ranker")
                assert not client.is_model_ready("ranker")
                with pytest.raises(InferenceServerException, match="not loaded") as info:
                    grpc_infer(client, "ranker", [1], [1, 0, 0])
                assert info.value.status() == "StatusCode.NOT_FOUND"
            time.sleep(0.3)
        client.load_model("tower")  # reload the model the stream is using: a swap under its requests
        time.sleep(0.3)
    assert traffic.failed == [] and traffic.ok > 10, (traffic.ok, traffic.failed)
    with pytest.raises(InferenceServerException, match="unknown model") as info:
        client.load_model("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_bearer_token_over_grpc(deployment, serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = serve(deployment.config, "--auth-token-file", str(token))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()  # health needs no token
    keys, counts, expect = deployment.query("tower", np.random.RandomState(5))
    for headers in (None, {"authorization": "Bearer wrong"}):
        with pytest.raises(InferenceServerException, match="token") as info:
            grpc_infer(client, "tower", keys, counts, headers=headers)
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("tower")
    assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    out = grpc_infer(client, "tower", keys, counts, headers={"authorization": "Bearer s3cret"}).as_numpy("OUTPUT0")
    assert out.tobytes() == expect.tobytes()
