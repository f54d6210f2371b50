"""LookupLayer against torch.nn.functional.embedding, bit for bit."""

import threading

import numpy as np
import pytest

from hps_torch_testing import DEFAULTS, F, hps_torch, reference_ids, served, torch, with_default  # noqa: F401

SHAPES = [(7,), (1,), (64, 3), (5, 4, 3), (2, 3, 4)]


def expected(served, model, table, ids):
    array = served[(model, table)]
    return F.embedding(reference_ids(ids, array.shape[0]), with_default(array, DEFAULTS[(model, table)]))


@pytest.mark.parametrize("model,table", sorted(DEFAULTS))
@pytest.mark.parametrize("shape", SHAPES)
def test_lookup_matches_embedding(served, model, table, shape):
    array = served[(model, table)]
    rng = np.random.RandomState(hash((model, table, shape)) % 2**31)
    ids = torch.from_numpy(rng.randint(0, array.shape[0], size=shape).astype(np.int64))
    layer = hps_torch.LookupLayer(model_name=model, table_id=table, emb_vec_size=array.shape[1])
    out = layer(ids)
    assert out.shape == ids.shape + (array.shape[1],) and out.dtype == torch.float32 and out.device == ids.device
    assert torch.equal(out, expected(served, model, table, ids))


def test_duplicates_and_unknown_keys(served):
    array = served[("bar", 1)]
    rows = array.shape[0]
    ids = torch.tensor([[5, 5, rows, 5], [rows + 100, 0, -1, 2**40], [rows - 1, rows - 1, 7, 5]], dtype=torch.int64)
    out = hps_torch.LookupLayer("bar", 1, 32)(ids)
    assert torch.equal(out, expected(served, "bar", 1, ids))
    assert torch.equal(out[1, 0], torch.full((32,), -2.0))  # the table's default value
    assert torch.equal(out[0, 0], out[0, 1])


def test_empty_and_non_contiguous_ids(served):
    layer = hps_torch.LookupLayer("foo", 0, 16)
    assert layer(torch.zeros(0, dtype=torch.int64)).shape == (0, 16)
    assert layer(torch.zeros(4, 0, dtype=torch.int64)).shape == (4, 0, 16)
    ids = torch.arange(60, dtype=torch.int64).reshape(6, 10).t()  # transposed: not contiguous
    assert not ids.is_contiguous()
    assert torch.equal(layer(ids), expected(served, "foo", 0, ids))
    strided = torch.arange(100, dtype=torch.int64)[::3]
    assert torch.equal(layer(strided), expected(served, "foo", 0, strided))


def test_more_keys_than_one_lookup_takes_are_split(served):
    # bar/table 0 takes max_batch_size 1024 × 3 = 3072 keys per lookup; 10000 keys go in 4 chunks.
    array = served[("bar", 0)]
    ids = torch.from_numpy(np.random.RandomState(3).randint(0, array.shape[0] + 50, size=(10000,)).astype(np.int64))
    out = hps_torch.LookupLayer("bar", 0, 64)(ids)
    assert torch.equal(out, expected(served, "bar", 0, ids))
    ids2 = ids[:3072 * 2].reshape(2, 3072)  # exactly two full chunks
    assert torch.equal(hps_torch.LookupLayer("bar", 0, 64)(ids2), expected(served, "bar", 0, ids2))


def test_op_is_callable_directly(served):
    ids = torch.tensor([3, 1, 2], dtype=torch.int64)
    assert torch.equal(torch.ops.hps.lookup(ids, "foo", 0, 16), expected(served, "foo", 0, ids))
    assert torch.equal(hps_torch.lookup(ids, "foo", 0, 16, ""), expected(served, "foo", 0, ids))


def test_inference_mode_and_no_grad(served):
    layer = hps_torch.LookupLayer("foo", 0, 16)
    sparse = hps_torch.SparseLookupLayer("foo", 0, 16, mode="sum")
    ids = torch.randint(0, 3000, (32, 4))
    want = expected(served, "foo", 0, ids)
    with torch.inference_mode():
        out = layer(ids)
        pooled = sparse(ids)
        assert out.is_inference()
    assert torch.equal(out, want)
    with torch.no_grad():
        assert torch.equal(layer(ids), want)
        assert torch.equal(sparse(ids), pooled)
    assert not layer(ids).requires_grad


def test_gradient_through_the_lookup_is_an_error(served):
    out = hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1, 2]))
    assert not out.requires_grad and out.grad_fn is None
    assert list(hps_torch.LookupLayer("foo", 0, 16).parameters()) == []
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()


def test_concurrent_lookups_from_threads(served):
    layer = hps_torch.LookupLayer("bar", 0, 64)
    errors = []

    def work(seed):
        try:
            rng = np.random.RandomState(seed)
            for _ in range(20):
                ids = torch.from_numpy(rng.randint(0, 5100, size=(257,)).astype(np.int64))
                assert torch.equal(layer(ids), expected(served, "bar", 0, ids))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_statistics_count_lookups(served):
    before = hps_torch.statistics()
    hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1, 1, 2], dtype=torch.int64))
    after = hps_torch.statistics()
    assert after["lookups"] >= before["lookups"] + 1
    assert after["keys"] >= before["keys"] + 3


def test_module_repr_and_state_dict(served):
    layer = hps_torch.LookupLayer("foo", 0, 16)
    assert "model_name='foo'" in repr(layer) and "emb_vec_size=16" in repr(layer)
    assert layer.state_dict() == {}
