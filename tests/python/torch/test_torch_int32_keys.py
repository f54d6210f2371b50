"""supportlonglong: false — int32 ids through both layers; int64 ids rejected."""

from hps_torch_testing import run_script


def test_int32_keys_without_supportlonglong(tmp_path):
    out = run_script(
        """
        import os, numpy as np, torch
        import torch.nn.functional as F
        import hierarchical_parameter_server.torch as hps_torch
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work, seed=5)
        config = make_config(os.path.join(work, "ps32.json"), tables, supportlonglong=False)
        assert hps_torch.Init(config) == "OK"
        for (model, table), (_, array) in tables.items():
            weight = torch.from_numpy(array)
            dim = array.shape[1]
            ids = torch.from_numpy(np.random.RandomState(table).randint(0, array.shape[0], size=(256, 3)).astype(np.int32))
            layer = hps_torch.LookupLayer(model, table, dim)
            assert torch.equal(layer(ids), F.embedding(ids.long(), weight))
            for mode in ("sum", "mean", "max"):
                bag = hps_torch.SparseLookupLayer(model, table, dim, mode=mode)
                got = bag(ids)
                want = F.embedding_bag(ids.long(), weight, mode=mode)
                assert float((got - want).abs().max()) <= 1e-6 * max(1.0, float(want.abs().max()))
                offsets = torch.tensor([0, 5, 5, 100], dtype=torch.int32)
                got = bag(ids.reshape(-1), offsets)
                want = F.embedding_bag(ids.reshape(-1).long(), weight, offsets.long(), mode=mode)
                assert float((got - want).abs().max()) <= 1e-6 * max(1.0, float(want.abs().max()))
        # Keys above 2^31 are read as uint32 by the server: a negative int32 is just an unknown key.
        out = hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([-1], dtype=torch.int32))
        assert torch.equal(out, torch.full((1, 16), 1.0)), out
        try:
            hps_torch.LookupLayer("foo", 0, 16)(torch.tensor([1], dtype=torch.int64))
        except ValueError as e:
            assert "supportlonglong: false" in str(e) and "ids.int()" in str(e), e
            print("int64-rejected")
        print("int32-ok")
        """
        % str(tmp_path)
    ).stdout
    assert "int32-ok" in out and "int64-rejected" in out
