"""hps.export_table takes torch tensors and nn.Embedding / nn.EmbeddingBag modules."""

import os

import numpy as np
import pytest

from hps_torch_testing import torch

import hierarchical_parameter_server as hps


def test_export_tensor_and_modules(tmp_path):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8)
    bag = torch.nn.EmbeddingBag(40, 4, mode="sum")
    tensor = torch.randn(30, 6, requires_grad=True)
    for name, source, want in [
        ("emb", emb, emb.weight.detach().numpy()),
        ("bag", bag, bag.weight.detach().numpy()),
        ("tensor", tensor, tensor.detach().numpy()),
        ("view", emb.weight[10:20], emb.weight.detach().numpy()[10:20]),
    ]:
        path = hps.export_table(str(tmp_path / name), source)
        keys, vectors = hps.read_table(path)
        np.testing.assert_array_equal(keys, np.arange(want.shape[0]))
        np.testing.assert_array_equal(vectors, want)


def test_export_with_torch_keys_and_other_dtypes(tmp_path):
    vectors = torch.randn(5, 3, dtype=torch.float64)
    keys = torch.tensor([10, 3, 7, 100, 2**40], dtype=torch.int64)
    keys_out, vectors_out = hps.read_table(hps.export_table(str(tmp_path / "k"), vectors, keys=keys))
    np.testing.assert_array_equal(keys_out, keys.numpy())
    np.testing.assert_array_equal(vectors_out, vectors.numpy().astype(np.float32))
    half = torch.randn(4, 2, dtype=torch.bfloat16)
    _, out = hps.read_table(hps.export_table(str(tmp_path / "bf16"), half))
    np.testing.assert_array_equal(out, half.float().numpy())


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        hps.export_table(str(tmp_path / "a"), torch.randn(4))
    with pytest.raises(ValueError, match="module with a .weight tensor"):
        hps.export_table(str(tmp_path / "b"), torch.nn.ReLU())
    with pytest.raises(ValueError, match="keys must be unique"):
        hps.export_table(str(tmp_path / "c"), torch.randn(2, 2), keys=torch.tensor([1, 1]))
    assert not os.path.exists(str(tmp_path / "c"))
