"""Every bad input is a Python exception that names the problem."""

import os

import pytest

from hps_torch_testing import hps_torch, run_script, served, torch  # noqa: F401


def test_key_dtype(served):
    layer = hps_torch.LookupLayer("foo", 0, 16)
    with pytest.raises(ValueError, match="ids must be int64"):
        layer(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"int64 keys \(supportlonglong: true\).*torch.int32"):
        layer(torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        layer([1, 2])


def test_emb_vec_size_mismatch(served):
    with pytest.raises(ValueError, match=r"emb_vec_size is 8, but table 0 of model 'foo' has vectors of 16 floats"):
        hps_torch.LookupLayer("foo", 0, 8)(torch.tensor([1]))
    with pytest.raises(ValueError, match="emb_vec_size is 16.*32 floats"):
        hps_torch.SparseLookupLayer("bar", 1, 16)(torch.tensor([[1, 2]]))


def test_table_id_out_of_range(served):
    with pytest.raises(ValueError, match=r"table_id 2 is out of range: model 'bar' has 2 table"):
        hps_torch.LookupLayer("bar", 2, 16)(torch.tensor([1]))


def test_unknown_model(served):
    with pytest.raises(ValueError, match=r"'nope'.*models: .*foo") as info:
        hps_torch.LookupLayer("nope", 0, 16)(torch.tensor([1]))
    assert isinstance(info.value, hps_torch.HPSError) and info.value.status == 4


def test_unsupported_device(served):
    from hierarchical_parameter_server.torch import ops

    # Meta tensors get the fake implementation (shapes only), as every op gives them.
    out = hps_torch.LookupLayer("foo", 0, 16)(torch.zeros(3, 2, dtype=torch.int64, device="meta"))
    assert out.device.type == "meta" and out.shape == (3, 2, 16) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="CPU and CUDA tensors only"):
        ops._resolve_slow(torch.device("meta"), torch.int64, "foo", 0, 16, "")


def test_constructor_arguments():
    with pytest.raises(ValueError, match="model_name"):
        hps_torch.LookupLayer("", 0, 16)
    with pytest.raises(ValueError, match="table_id"):
        hps_torch.LookupLayer("foo", -1, 16)
    with pytest.raises(ValueError, match="emb_vec_size"):
        hps_torch.LookupLayer("foo", 0, 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        hps_torch.SparseLookupLayer("foo", 0, 16, mode="median")


def test_sparse_arguments(served):
    layer = hps_torch.SparseLookupLayer("foo", 0, 16, mode="mean")
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="1-D ids need offsets"):
        layer(ids)
    with pytest.raises(ValueError, match="offsets must be None when ids is 2-D"):
        layer(ids.reshape(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="ids must be 1-D .* or 2-D"):
        layer(ids.reshape(1, 1, 3))
    with pytest.raises(ValueError, match="offsets must be a 1-D tensor"):
        layer(ids, torch.tensor([[0]]))
    with pytest.raises(ValueError, match="offsets must be int64 or int32"):
        layer(ids, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="per_sample_weights is only supported with mode='sum'"):
        layer(ids, torch.tensor([0]), per_sample_weights=torch.ones(3))
    summed = hps_torch.SparseLookupLayer("foo", 0, 16, mode="sum")
    with pytest.raises(ValueError, match="per_sample_weights must have the shape of ids"):
        summed(ids, torch.tensor([0]), per_sample_weights=torch.ones(2))
    with pytest.raises(ValueError, match="per_sample_weights must be float32"):
        summed(ids, torch.tensor([0]), per_sample_weights=torch.ones(3, dtype=torch.float64))


def test_gradient_attempt_through_weights(served):
    layer = hps_torch.SparseLookupLayer("foo", 0, 16, mode="sum")
    weights = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        layer(torch.tensor([1, 2, 3]), torch.tensor([0]), per_sample_weights=weights)
    with torch.no_grad():  # no gradient wanted: fine
        layer(torch.tensor([1, 2, 3]), torch.tensor([0]), per_sample_weights=weights)


def test_backward_formula_of_the_op_raises():
    from hierarchical_parameter_server.torch import ops

    with pytest.raises(RuntimeError, match="hps::lookup has no gradient"):
        ops._no_gradient(None, torch.ones(1))


def test_init_same_file_again_and_another_file(served, config_file, tmp_path):
    assert hps_torch.Init(config_file) == "OK"
    other = str(tmp_path / "other.json")
    with pytest.raises(RuntimeError, match="already initialised from .*%s.*cannot be initialised again from .*other.json" % os.path.basename(config_file)):
        hps_torch.Init(other)
    with pytest.raises(RuntimeError, match="already initialised"):
        hps_torch.LookupLayer("foo", 0, 16, ps_config_file=other)(torch.tensor([1]))
    with pytest.raises(ValueError, match="ps_config_file"):
        hps_torch.Init(None)


def test_not_initialised_bad_config_and_recovery(tmp_path):
    out = run_script(
        """
        import os, torch
        import hierarchical_parameter_server.torch as hps_torch
        from conftest import make_config, make_tables
        work = %r
        assert not hps_torch.is_initialized()
        try:
            hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1]))
        except RuntimeError as e:
            assert "not initialised" in str(e) and "Init(ps_config_file)" in str(e), e
            print("not-initialised")
        bad = os.path.join(work, "bad.json")
        with open(bad, "w") as f:
            f.write('{"supportlonglong": true, "models": [{"model": "m", "sparse_files": ["/nonexistent/t"], '
                    '"embedding_vecsize_per_table": [4], "embedding_table_names": ["t"]}]}')
        try:
            hps_torch.Init(bad)
        except RuntimeError as e:
            assert isinstance(e, hps_torch.HPSRuntimeError) and "/nonexistent/t" in str(e), e
            print("bad-config:", e)
        try:
            hps_torch.Init(os.path.join(work, "missing.json"))
        except RuntimeError as e:
            assert "missing.json" in str(e), e
            print("missing-config")
        assert not hps_torch.is_initialized()
        tables = make_tables(work)
        config = make_config(os.path.join(work, "ps.json"), tables)
        assert hps_torch.Init(config) == "OK"
        print(hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1])).shape)
        """
        % str(tmp_path)
    ).stdout
    assert "not-initialised" in out and "bad-config:" in out and "missing-config" in out
    assert "torch.Size([1, 16])" in out


def test_layer_with_ps_config_file_initialises(tmp_path):
    out = run_script(
        """
        import os, torch
        import hierarchical_parameter_server.torch as hps_torch
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work)
        config = make_config(os.path.join(work, "ps.json"), tables)
        layer = hps_torch.LookupLayer("bar", 1, 32, ps_config_file=config)
        ids = torch.tensor([3, 4])
        assert torch.equal(layer(ids), torch.from_numpy(tables[("bar", 1)][1])[ids])
        assert hps_torch.is_initialized()
        print("lazy-init-ok")
        """
        % str(tmp_path)
    ).stdout
    assert "lazy-init-ok" in out


def test_missing_library_is_a_clear_error(tmp_path):
    proc = run_script(
        """
        import os, torch
        os.environ["HPS_C_LIBRARY"] = "/nonexistent/libhps.so"
        import hierarchical_parameter_server.torch as hps_torch
        try:
            hps_torch.Init("ps.json")
        except FileNotFoundError as e:
            assert "/nonexistent/libhps.so" in str(e) and "HPS_C_LIBRARY" in str(e), e
            print("missing-library")
        """
    )
    assert "missing-library" in proc.stdout


def test_library_path_and_version(served):
    assert os.path.isfile(hps_torch.library_path())
    assert hps_torch.c_library_version().split(".")[0] == "1"
