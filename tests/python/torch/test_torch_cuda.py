"""CUDA tensors: looked up in device memory on the ids' GPU, on torch.cuda.current_stream(). Skipped without
CUDA (these are the only tests that need a GPU; every other test runs on CPU tensors)."""

import json
import os

import numpy as np
import pytest

from hps_torch_testing import DEFAULTS, F, assert_close_relative, hps_torch, reference_ids, run_script, served, torch, with_default  # noqa: F401

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_expected(served, model, table, ids):
    array = served[(model, table)]
    weight = with_default(array, DEFAULTS[(model, table)]).cuda()
    return F.embedding(reference_ids(ids, array.shape[0]), weight)


@pytest.mark.parametrize("model,table", sorted(DEFAULTS))
@pytest.mark.parametrize("shape", [(7,), (64, 3), (5, 4, 3)])
def test_cuda_lookup_matches_embedding(served, model, table, shape):
    array = served[(model, table)]
    g = torch.Generator().manual_seed(len(shape) + table)
    ids = torch.randint(-2, array.shape[0] + 20, shape, generator=g).cuda()  # unknown keys too
    out = hps_torch.LookupLayer(model, table, array.shape[1])(ids)
    assert out.device == ids.device and out.shape == ids.shape + (array.shape[1],)
    assert torch.equal(out, cuda_expected(served, model, table, ids))


def test_cuda_lookup_on_a_side_stream(served):
    array = served[("bar", 0)]
    stream = torch.cuda.Stream()
    ids = torch.randint(0, array.shape[0], (4096,)).cuda()
    want = cuda_expected(served, "bar", 0, ids)
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        for _ in range(5):
            out = hps_torch.LookupLayer("bar", 0, 64)(ids)  # 4096 keys > 3072: split in two lookups
            out = out * 1.0  # work queued behind the lookup on the same stream
    stream.synchronize()
    assert torch.equal(out, want)


def test_cuda_misses_come_from_host_tiers(served):
    # gpucacheper 0.5: the first lookup of every key misses the cache and is fetched from the hash map.
    array = served[("foo", 0)]
    before = hps_torch.statistics()
    ids = torch.arange(array.shape[0], dtype=torch.int64).cuda()
    assert torch.equal(hps_torch.LookupLayer("foo", 0, 16)(ids), cuda_expected(served, "foo", 0, ids))
    after = hps_torch.statistics()
    assert after["volatile_hits"] > before["volatile_hits"]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_cuda_sparse_lookup(served, mode):
    array = served[("foo", 0)]
    rows = array.shape[0]
    weight = with_default(array, DEFAULTS[("foo", 0)]).cuda()
    ids = torch.randint(0, rows + 5, (300,)).cuda()
    offsets = torch.tensor([0, 0, 10, 11, 150, 299], dtype=torch.int64).cuda()
    layer = hps_torch.SparseLookupLayer("foo", 0, 16, mode=mode)
    assert_close_relative(layer(ids, offsets), F.embedding_bag(reference_ids(ids, rows), weight, offsets, mode=mode))
    ids2 = ids.reshape(30, 10)
    psw = torch.rand(30, 10).cuda() if mode == "sum" else None
    assert_close_relative(layer(ids2, per_sample_weights=psw),
                          F.embedding_bag(reference_ids(ids2, rows), weight, mode=mode, per_sample_weights=psw))


def test_cuda_compile(served):
    layer = hps_torch.LookupLayer("foo", 0, 16)
    bag = hps_torch.SparseLookupLayer("bar", 1, 32, mode="sum")
    fn = torch.compile(lambda a, b: torch.cat([layer(a).sum(1), bag(b)], dim=1), fullgraph=True)
    a, b = torch.randint(0, 3000, (8, 3)).cuda(), torch.randint(0, 2000, (8, 5)).cuda()
    with torch.inference_mode():
        want = torch.cat([layer(a).sum(1), bag(b)], dim=1)
        torch.testing.assert_close(fn(a, b), want, rtol=1e-6, atol=1e-6)


def test_cuda_device_not_deployed(served):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices (the configuration deploys device 0 only)")
    with pytest.raises(ValueError, match="device 1 is not in the deployed_device_list"):
        hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1], device="cuda:1"))


def test_two_gpus(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    out = run_script(
        """
        import os, torch
        import torch.nn.functional as F
        import hierarchical_parameter_server.torch as hps_torch
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work)
        config = make_config(os.path.join(work, "ps.json"), tables, deployed_device_list=[0, 1])
        hps_torch.Init(config)
        weight = torch.from_numpy(tables[("bar", 0)][1])
        for device in ("cuda:0", "cuda:1", "cpu"):
            ids = torch.randint(0, 5000, (1000, 2), device=device)
            out = hps_torch.LookupLayer("bar", 0, 64)(ids)
            assert out.device == ids.device
            assert torch.equal(out.cpu(), F.embedding(ids.cpu(), weight)), device
        print("two-gpus-ok")
        """
        % str(tmp_path)
    ).stdout
    assert "two-gpus-ok" in out
