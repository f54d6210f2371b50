"""Mutated configurations through `hps validate` and `hps lookup` as subprocesses (issue: reliability).

A valid two-table configuration (volatile hash map, persistent RocksDB) is mutated in HPS_MUTATIONS ways
(default 300), reproducibly (seed HPS_MUTATION_SEED, default 17): values replaced by boundary values of
every JSON type, keys deleted or added, array elements dropped or repeated, and a share of raw text edits.
For each mutant:

- neither command ends by a signal or an exit status >= 128 (no trap, abort or kill), nor runs past its
  time limit;
- they agree: validate accepting it means lookup does not refuse it as an invalid config, and validate
  refusing it means lookup refuses it too;
- a lookup that succeeds prints one line per key and no inf or nan (every table value and default is finite).

The subprocesses run under a 6 GiB address-space limit, so a setting that makes the server allocate without
bound fails the allocation (an error naming it) instead of swapping the machine.
"""

import copy
import json
import math
import os
import random
import resource
import subprocess

import numpy as np
import pytest

from test_cli import hps_binary, write_table

MUTATIONS = int(os.environ.get("HPS_MUTATIONS", "300"))
SEED = int(os.environ.get("HPS_MUTATION_SEED", "17"))
KEYS = "0,3,6,9,999999,-5"

INTERESTING = [
    0, 1, -1, 2, 3, 7, 64, 255, 256, 4095, 4096, 4097, 65536, 2**28, 2**28 + 1, 2**31 - 1, 2**31, 2**32, 2**32 + 5,
    2**53, 2**62, 2**63 - 1, -2**63, 10**8, 10**18, 0.0, -0.0, 0.5, 1.5, 1e-45, 3.4028235e38, 1e39, -1e39, 1e308,
    "", "x", "0", "1e999", "hash_map", "rocks_db", "redis_cluster", "multi_process_hash_map", "disabled",
    "dynamic", "static", "uvm", "evict_random", "evict_oldest", "127.0.0.1:1", "/", "/nonexistent", "..",
    "t0", "t1", None, True, False, [], {}, [0], [1, 2, 3], [-1], [2**40], [1e39], ["a", "b"], {"a": 1},
]
RAW_NUMBERS = ["1e999", "-1e999", "1e-999", "123456789012345678901234567890", "-0", "0e0", "1E+2"]
LIMIT_AS = 6 << 30


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def run_hps(*args, timeout=120):
    env = dict(os.environ, HPS_LOG_LEVEL="warning")
    try:
        return subprocess.run([hps_binary(), *args], capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=_limit)
    except subprocess.TimeoutExpired:
        pytest.fail("hps %s ran past %d s" % (" ".join(args)[:200], timeout))


def paths(node, prefix=()):
    """Every path (tuple of keys/indices) in a JSON tree, the root excluded."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out += paths(v, prefix + (i,))
    return out


def parent(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    return node


def mutate(base_doc, base_text, rng):
    """One mutant's text and a short description."""
    choice = rng.random()
    if choice < 0.15:
        # Raw text edits: truncation, a byte changed, a number spelled beyond a double.
        text = base_text
        kind = rng.randrange(3)
        if kind == 0:
            cut = rng.randrange(len(text))
            return text[:cut], "truncated at %d" % cut
        if kind == 1:
            at = rng.randrange(len(text))
            ch = chr(rng.choice([0, 9, 34, 44, 48, 58, 91, 92, 93, 123, 125, 0xE9, 0x1F600]))
            return text[:at] + ch + text[at + 1:], "char %r at %d" % (ch, at)
        numbers = [i for i, c in enumerate(text) if c.isdigit() and (i == 0 or not text[i - 1].isalnum())]
        at = rng.choice(numbers)
        end = at
        while end < len(text) and (text[end].isdigit() or text[end] in ".eE+-"):
            end += 1
        raw = rng.choice(RAW_NUMBERS)
        return text[:at] + raw + text[end:], "number at %d -> %s" % (at, raw)
    doc = copy.deepcopy(base_doc)
    edits = []
    for _ in range(1 + (rng.random() < 0.3)):
        path = rng.choice(paths(doc))
        holder = parent(doc, path)
        key = path[-1]
        op = rng.random()
        if op < 0.6:
            value = copy.deepcopy(rng.choice(INTERESTING))
            holder[key] = value
            edits.append("%s = %s" % ("/".join(map(str, path)), json.dumps(value)[:40]))
        elif op < 0.75:
            del holder[key]
            edits.append("delete %s" % "/".join(map(str, path)))
        elif op < 0.85 and isinstance(holder, list):
            holder.insert(key, copy.deepcopy(holder[key]))
            edits.append("repeat %s" % "/".join(map(str, path)))
        else:
            target = holder if isinstance(holder, dict) else doc
            name = rng.choice(["unknown_key", "initial_cache_rate", "overflow_margin", "num_partitions", "read_only", "refresh"])
            target[name] = copy.deepcopy(rng.choice(INTERESTING))
            edits.append("add %s" % name)
    return json.dumps(doc, allow_nan=False), "; ".join(edits)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutation")
    rng = np.random.default_rng(5)
    for name, rows, dim in (("t0", 300, 8), ("t1", 120, 3)):
        keys = np.arange(rows, dtype=np.int64) * 3
        write_table(str(root / name), keys, rng.standard_normal((rows, dim)).astype(np.float32))
    doc = {
        "supportlonglong": True,
        "volatile_db": {"type": "hash_map", "num_partitions": 3, "overflow_margin": 1000, "initial_cache_rate": 1.0, "max_batch_size": 1000},
        "persistent_db": {"type": "rocks_db", "path": str(root / "rocks"), "num_threads": 2, "max_batch_size": 1000},
        "models": [{
            "model": "m",
            "sparse_files": [str(root / "t0"), str(root / "t1")],
            "embedding_table_names": ["a", "b"],
            "embedding_vecsize_per_table": [8, 3],
            "maxnum_catfeature_query_per_table_per_sample": [6, 2],
            "default_value_for_each_table": [0.5, -2.0],
            "deployed_device_list": [0],
            "max_batch_size": 16,
            "hit_rate_threshold": 0.9,
            "gpucacheper": 0.5,
            "gpucache": True,
            "num_of_worker_buffer_in_pool": 2,
        }],
    }
    return root, doc


def test_base_config_is_valid_and_answers(base):
    root, doc = base
    path = root / "base.json"
    path.write_text(json.dumps(doc))
    assert run_hps("validate", str(path)).returncode == 0
    result = run_hps("lookup", "--config", str(path), "--model", "m", "--table", "0", "--keys", KEYS)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(KEYS.split(","))


def test_mutated_configs(base):
    root, doc = base
    base_text = json.dumps(doc)
    rng = random.Random(SEED)
    counts = {"valid": 0, "invalid": 0, "lookup_ok": 0}
    for i in range(MUTATIONS):
        text, what = mutate(doc, base_text, rng)
        path = root / ("mutant-%03d.json" % i)
        path.write_text(text)
        label = "mutant %d (%s): %s" % (i, what, path)
        validate = run_hps("validate", str(path))
        lookup = run_hps("lookup", "--config", str(path), "--model", "m", "--table", "0", "--keys", KEYS)
        for name, result in (("validate", validate), ("lookup", lookup)):
            assert 0 <= result.returncode < 128, "%s: hps %s ended with %d\n%s" % (label, name, result.returncode, result.stderr[-2000:])
            assert result.returncode in (0, 1), "%s: hps %s exit %d\n%s" % (label, name, result.returncode, result.stderr[-2000:])
        if validate.returncode == 0:
            counts["valid"] += 1
            assert "invalid config" not in lookup.stderr, "%s: validate accepted it, lookup refused it:\n%s" % (label, lookup.stderr[-2000:])
        else:
            counts["invalid"] += 1
            assert lookup.returncode != 0, "%s: validate refused it, lookup answered:\n%s" % (label, validate.stderr[-2000:])
        if lookup.returncode == 0:
            counts["lookup_ok"] += 1
            lines = lookup.stdout.splitlines()
            assert len(lines) == len(KEYS.split(",")), "%s: %d lines" % (label, len(lines))
            for line in lines:
                for word in line.split():
                    assert not word.startswith(("nan", "inf", "-inf")), "%s: answer %r" % (label, line)
                    assert math.isfinite(float(word)), "%s: answer %r" % (label, line)
        path.unlink()
    print("mutations:", counts)
    # The mutants must exercise both outcomes, or the test checks nothing.
    assert counts["valid"] > MUTATIONS // 10 and counts["invalid"] > MUTATIONS // 10, counts
