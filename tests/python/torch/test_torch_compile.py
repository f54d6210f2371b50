"""torch.compile keeps hps::lookup as one op; torch.export traces models that use the layers."""

import os

import numpy as np
import pytest

from hps_torch_testing import hps_torch, run_script, served, torch  # noqa: F401


class Model(torch.nn.Module):
    """Both layers and a little dense arithmetic around them."""

    def __init__(self, ps_config_file=None):
        super().__init__()
        self.lookup = hps_torch.LookupLayer("foo", 0, 16, ps_config_file=ps_config_file)
        self.bag = hps_torch.SparseLookupLayer("bar", 1, 32, mode="sum", ps_config_file=ps_config_file)
        torch.manual_seed(0)
        self.dense = torch.nn.Linear(16 + 32, 4)

    def forward(self, ids, bag_ids):
        a = self.lookup(ids).sum(dim=1)
        b = self.bag(bag_ids)
        return self.dense(torch.cat([a, b], dim=1))


def inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3100, (batch, 3), generator=g), torch.randint(0, 2100, (batch, 5), generator=g)


def lookup_nodes(graph):
    return [n for n in graph.nodes if n.op == "call_function" and "hps.lookup" in str(n.target)]


def test_opcheck(served):
    ids = torch.tensor([[1, 2, 5000]], dtype=torch.int64)
    torch.library.opcheck(torch.ops.hps.lookup.default, (ids, "foo", 0, 16, ""))


def test_compile_keeps_one_op_per_lookup(served):
    model = Model().eval()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm.graph)
        return gm.forward

    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        for batch in (8, 8, 13):
            ids, bag_ids = inputs(batch, seed=batch)
            assert torch.equal(compiled(ids, bag_ids), model(ids, bag_ids))
    assert graphs, "the backend was not called"
    assert all(len(lookup_nodes(g)) == 2 for g in graphs), [str(g) for g in graphs]


def test_compile_inductor(served):
    # Inductor generates C++ for the dense part and keeps the two lookups as calls of the op.
    model = Model().eval()
    compiled = torch.compile(model, fullgraph=True)
    with torch.inference_mode():
        ids, bag_ids = inputs(16)
        torch.testing.assert_close(compiled(ids, bag_ids), model(ids, bag_ids), rtol=1e-6, atol=1e-6)
        ids, bag_ids = inputs(16, seed=1)
        torch.testing.assert_close(compiled(ids, bag_ids), model(ids, bag_ids), rtol=1e-6, atol=1e-6)


def test_export_and_run(served):
    model = Model().eval()
    ids, bag_ids = inputs(10)
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (ids, bag_ids), dynamic_shapes=({0: batch}, {0: batch}))
    assert len(lookup_nodes(exported.graph)) == 2
    runnable = exported.module()
    for b in (10, 3, 40):
        ids, bag_ids = inputs(b, seed=b)
        assert torch.equal(runnable(ids, bag_ids), model(ids, bag_ids))


def test_exported_program_serves_in_a_fresh_process(config_file, tmp_path):
    """A program saved with torch.export.save loads in a new process and initialises the server itself
    (the layers were built with ps_config_file)."""
    path = str(tmp_path / "model.pt2")
    model = Model(ps_config_file=config_file).eval()
    ids, bag_ids = inputs(6)
    with torch.no_grad():
        want = model(ids, bag_ids)
    exported = torch.export.export(model, (ids, bag_ids))
    torch.export.save(exported, path)
    np.save(str(tmp_path / "want.npy"), want.numpy())
    out = run_script(
        """
        import numpy as np, torch
        import hierarchical_parameter_server.torch as hps_torch
        program = torch.export.load(%r)
        g = torch.Generator().manual_seed(0)
        ids, bag_ids = torch.randint(0, 3100, (6, 3), generator=g), torch.randint(0, 2100, (6, 5), generator=g)
        got = program.module()(ids, bag_ids)
        assert torch.equal(got, torch.from_numpy(np.load(%r))), (got, )
        assert hps_torch.is_initialized()
        print("exported-ok")
        """
        % (path, str(tmp_path / "want.npy"))
    ).stdout
    assert "exported-ok" in out
