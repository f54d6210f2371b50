"""SparseLookupLayer against torch.nn.functional.embedding_bag (max abs difference ≤ 1e-6 relative)."""

import numpy as np
import pytest

from hps_torch_testing import DEFAULTS, F, assert_close_relative, hps_torch, reference_ids, served, torch, with_default  # noqa: F401

MODES = ["sum", "mean", "max"]


def table_of(served, model, table):
    array = served[(model, table)]
    return array.shape[0], with_default(array, DEFAULTS[(model, table)])


def bags(rng, rows, sizes):
    """1-D ids (some unknown: rows..rows+9) and the offsets of bags of the given sizes (zeros = empty bags)."""
    ids = rng.randint(0, rows + 10, size=(int(sum(sizes)),)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(offsets)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("include_last_offset", [False, True])
@pytest.mark.parametrize("model,table", [("foo", 0), ("bar", 0)])
def test_offsets_form(served, mode, include_last_offset, model, table):
    rows, weight = table_of(served, model, table)
    dim = weight.shape[1]
    rng = np.random.RandomState(7)
    sizes = [3, 0, 1, 5, 0, 0, 2, 8, 1, 0]  # empty bags first, middle and last
    ids, offsets = bags(rng, rows, sizes)
    if include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([ids.numel()])])
    layer = hps_torch.SparseLookupLayer(model, table, dim, mode=mode, include_last_offset=include_last_offset)
    out = layer(ids, offsets)
    want = F.embedding_bag(reference_ids(ids, rows), weight, offsets, mode=mode, include_last_offset=include_last_offset)
    assert out.shape == (len(sizes), dim)
    assert_close_relative(out, want)
    empty = [i for i, s in enumerate(sizes) if s == 0]
    assert torch.equal(out[empty], torch.zeros(len(empty), dim))


@pytest.mark.parametrize("mode", MODES)
def test_2d_ids(served, mode):
    rows, weight = table_of(served, "bar", 1)
    ids = torch.from_numpy(np.random.RandomState(1).randint(0, rows + 5, size=(33, 6)).astype(np.int64))
    out = hps_torch.SparseLookupLayer("bar", 1, 32, mode=mode)(ids)
    assert_close_relative(out, F.embedding_bag(reference_ids(ids, rows), weight, mode=mode))


@pytest.mark.parametrize("form", ["offsets", "offsets_last", "2d"])
def test_per_sample_weights_sum(served, form):
    rows, weight = table_of(served, "foo", 0)
    rng = np.random.RandomState(11)
    if form == "2d":
        ids = torch.from_numpy(rng.randint(0, rows, size=(20, 4)).astype(np.int64))
        offsets = None
    else:
        ids, offsets = bags(rng, rows, [2, 0, 4, 1, 3, 0])
        if form == "offsets_last":
            offsets = torch.cat([offsets, torch.tensor([ids.numel()])])
    psw = torch.from_numpy(rng.uniform(-2, 2, size=tuple(ids.shape)).astype(np.float32))
    last = form == "offsets_last"
    out = hps_torch.SparseLookupLayer("foo", 0, 16, mode="sum", include_last_offset=last)(ids, offsets, per_sample_weights=psw)
    want = F.embedding_bag(reference_ids(ids, rows), weight, offsets, mode="sum", per_sample_weights=psw, include_last_offset=last)
    assert_close_relative(out, want)


def test_int32_offsets_and_duplicates(served):
    rows, weight = table_of(served, "foo", 0)
    ids = torch.tensor([4, 4, 4, 9, 4, 9], dtype=torch.int64)
    offsets = torch.tensor([0, 3, 3], dtype=torch.int32)
    for mode in MODES:
        out = hps_torch.SparseLookupLayer("foo", 0, 16, mode=mode)(ids, offsets)
        assert_close_relative(out, F.embedding_bag(ids, weight, offsets.long(), mode=mode))


def test_default_mode_is_mean_like_embedding_bag(served):
    assert hps_torch.SparseLookupLayer("foo", 0, 16).mode == torch.nn.EmbeddingBag(3, 2).mode == "mean"


def test_many_ids_are_split(served):
    # bar/table 0 takes 3072 keys per lookup: 9000 ids in 1000 bags go through in chunks.
    rows, weight = table_of(served, "bar", 0)
    ids = torch.from_numpy(np.random.RandomState(5).randint(0, rows, size=(1000, 9)).astype(np.int64))
    out = hps_torch.SparseLookupLayer("bar", 0, 64, mode="sum")(ids)
    assert_close_relative(out, F.embedding_bag(ids, weight, mode="sum"))


def test_no_ids(served):
    layer = hps_torch.SparseLookupLayer("foo", 0, 16, mode="sum")
    out = layer(torch.zeros(0, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    assert torch.equal(out, torch.zeros(3, 16))
