"""A DLRM-style model trained in PyTorch, served through HPS.

1. Train a small DLRM-style click model: dense features through a bottom MLP, four categorical features
   through ``nn.EmbeddingBag`` tables (three multi-hot, pooled by sum; one single-valued), pairwise dot
   interactions, a top MLP.
2. Export each trained table in HPS's format with ``hps.export_table`` (it takes the ``nn.EmbeddingBag``
   itself) and write an HPS configuration naming them.
3. Rebuild the model for inference with ``hierarchical_parameter_server.torch`` layers in place of the
   embedding bags (``SparseLookupLayer`` for the multi-hot features, ``LookupLayer`` for the single-valued
   one), the trained dense layers unchanged.
4. Serve fresh batches through both and assert that the outputs are equal (max abs difference ≤ 1e-6; the
   pooled sums are formed in the same order, so they are in fact identical).

    python examples/torch_dlrm/run.py [--workdir DIR] [--steps 300] [--batch 256]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

import hierarchical_parameter_server as hps
import hierarchical_parameter_server.torch as hps_torch

# (rows, ids per sample) of each categorical feature; ids per sample 1 = single-valued.
FEATURES = [(5000, 4), (2000, 3), (800, 6), (300, 1)]
DENSE = 13
DIM = 16


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="where the tables and config go (default: a temp dir)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def mlp(sizes, last_activation=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if last_activation or i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class Interaction(torch.nn.Module):
    """DLRM's dot interaction: the bottom MLP output and the pooled embeddings, all pairwise dot products
    (upper triangle), concatenated with the bottom output."""

    def forward(self, dense, embeddings):
        z = torch.stack([dense] + embeddings, dim=1)  # [B, F+1, D]
        dots = torch.bmm(z, z.transpose(1, 2))
        i, j = torch.triu_indices(z.shape[1], z.shape[1], offset=1)
        return torch.cat([dense, dots[:, i, j]], dim=1)


class DLRM(torch.nn.Module):
    """Training model: one nn.EmbeddingBag (mode sum) per categorical feature."""

    def __init__(self):
        super().__init__()
        self.bottom = mlp([DENSE, 64, DIM])
        self.embeddings = torch.nn.ModuleList([torch.nn.EmbeddingBag(rows, DIM, mode="sum") for rows, _ in FEATURES])
        pairs = (len(FEATURES) + 1) * len(FEATURES) // 2
        self.interaction = Interaction()
        self.top = mlp([DIM + pairs, 64, 1], last_activation=False)

    def pooled(self, sparse):
        return [bag(ids, offsets) for bag, (ids, offsets) in zip(self.embeddings, sparse)]

    def forward(self, dense, sparse):
        return self.top(self.interaction(self.bottom(dense), self.pooled(sparse))).squeeze(1)


class ServedDLRM(torch.nn.Module):
    """Inference model: the trained dense layers, embeddings looked up through HPS."""

    def __init__(self, trained, ps_config_file):
        super().__init__()
        self.bottom, self.interaction, self.top = trained.bottom, trained.interaction, trained.top
        lookups = []
        for t, (_, per_sample) in enumerate(FEATURES):
            if per_sample == 1:
                lookups.append(hps_torch.LookupLayer("dlrm", t, DIM, ps_config_file=ps_config_file))
            else:
                lookups.append(hps_torch.SparseLookupLayer("dlrm", t, DIM, mode="sum", ps_config_file=ps_config_file))
        self.lookups = torch.nn.ModuleList(lookups)

    def forward(self, dense, sparse):
        pooled = []
        for layer, (ids, offsets) in zip(self.lookups, sparse):
            if isinstance(layer, hps_torch.LookupLayer):
                pooled.append(layer(ids))  # one id per sample: offsets are 0..B-1
            else:
                pooled.append(layer(ids, offsets))
        return self.top(self.interaction(self.bottom(dense), pooled)).squeeze(1)


def make_batch(rng, batch, hidden):
    """Dense features, multi-hot bags of varying length (1..2×mean, so some bags are long and some short)
    and a label from a fixed hidden rule."""
    dense = torch.from_numpy(rng.normal(size=(batch, DENSE)).astype(np.float32))
    sparse, score = [], dense[:, 0] * 0.5
    for (rows, per_sample), weights in zip(FEATURES, hidden):
        lengths = rng.randint(1, 2 * per_sample, size=batch) if per_sample > 1 else np.ones(batch, np.int64)
        ids = np.minimum(rng.zipf(1.2, size=int(lengths.sum())) - 1, rows - 1).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        ids_t, offsets_t = torch.from_numpy(ids), torch.from_numpy(offsets)
        sparse.append((ids_t, offsets_t))
        score = score + F.embedding_bag(ids_t, weights, offsets_t, mode="sum").squeeze(1)
    label = (score > 0).float()
    return dense, sparse, label


def write_config(path, table_dirs, max_batch):
    config = {
        "supportlonglong": True,
        "models": [{
            "model": "dlrm",
            "sparse_files": table_dirs,
            "embedding_table_names": ["feature%d" % t for t in range(len(FEATURES))],
            "embedding_vecsize_per_table": [DIM] * len(FEATURES),
            "maxnum_catfeature_query_per_table_per_sample": [2 * per_sample for _, per_sample in FEATURES],
            "default_value_for_each_table": [0.0] * len(FEATURES),
            "deployed_device_list": [0],
            "max_batch_size": max_batch,
            "hit_rate_threshold": 1.0,
            "gpucache": True,
            "gpucacheper": 0.5,
        }],
    }
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def main(argv=None):
    args = parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="torch_dlrm_")
    os.makedirs(workdir, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    hidden = [torch.from_numpy(rng.normal(scale=0.3, size=(rows, 1)).astype(np.float32)) for rows, _ in FEATURES]

    # 1. Train.
    model = DLRM()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for step in range(args.steps):
        dense, sparse, label = make_batch(rng, args.batch, hidden)
        loss = F.binary_cross_entropy_with_logits(model(dense, sparse), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            print("step %4d  loss %.4f" % (step, loss.item()), flush=True)
    print("trained %d steps in %.1f s" % (args.steps, time.perf_counter() - start))
    model.eval()

    # 2. Export the tables and write the HPS configuration.
    table_dirs = [hps.export_table(os.path.join(workdir, "feature%d" % t), bag) for t, bag in enumerate(model.embeddings)]
    config = write_config(os.path.join(workdir, "dlrm.json"), table_dirs, args.batch)
    print("exported %d tables and wrote %s" % (len(table_dirs), config))

    # 3. Deploy and rebuild for inference with HPS layers.
    assert hps_torch.Init(config) == "OK"
    served = ServedDLRM(model, config).eval()

    # 4. Serve fresh batches through both; the outputs must be equal.
    worst, identical = 0.0, True
    with torch.inference_mode():
        for _ in range(10):
            dense, sparse, label = make_batch(rng, args.batch, hidden)
            want = model(dense, sparse)
            got = served(dense, sparse)
            worst = max(worst, float((got - want).abs().max()))
            identical = identical and torch.equal(got, want)
        accuracy = float(((got > 0).float() == label).float().mean())
    print("served 10 batches of %d through HPS: max |served - trained| = %.3g (%s), accuracy %.3f"
          % (args.batch, worst, "identical" if identical else "within 1e-6", accuracy))
    stats = hps_torch.statistics()
    print("HPS: %d lookups, %d keys, cache hits %d, misses %d" % (stats["lookups"], stats["keys"], stats["cache_hits"], stats["cache_misses"]))
    if worst > 1e-6:
        print("FAIL: the served outputs differ from the trained model's")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
