"""Fixtures for the hierarchical_parameter_server tests.

The tests run against the installed package (`pip install --no-build-isolation .`). To test the source tree
against a library built with `swift build`, set HPS_LIBRARY_PATH to the .so (or its directory): the
`python/` directory is then put first on sys.path (and on PYTHONPATH of the subprocesses).

The parameter server is built once per process, so this process initializes one configuration (two models,
three tables, int64 keys) and tests that need another one (not initialized yet, int32 keys, a SavedModel
loaded in a fresh process, Init failures) run a small script in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_DIR = os.path.join(REPO, "python")

if os.environ.get("HPS_LIBRARY_PATH"):
    sys.path.insert(0, SOURCE_DIR)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HPS_LOG_LEVEL", "warning")

# model -> per-table (rows, emb_vec_size); keys are 0..rows-1.
MODELS = {
    "foo": {"tables": [(3000, 16)], "maxnum": [10], "max_batch_size": 1024, "default": [1.0]},
    "bar": {"tables": [(5000, 64), (2000, 32)], "maxnum": [3, 5], "max_batch_size": 1024, "default": [0.25, -2.0]},
}


def make_tables(directory, models=MODELS, seed=0):
    """Writes the tables of `models` under `directory`; returns {(model, table_id): (path, array)}."""
    import hierarchical_parameter_server as hps

    rng = np.random.RandomState(seed)
    out = {}
    for name, spec in models.items():
        for t, (rows, dim) in enumerate(spec["tables"]):
            array = rng.uniform(-1.0, 1.0, size=(rows, dim)).astype(np.float32)
            path = os.path.join(directory, "%s_table%d" % (name, t))
            hps.export_table(path, array)
            out[(name, t)] = (path, array)
    return out


def make_config(path, tables, models=MODELS, supportlonglong=True, **overrides):
    """Writes an HPS JSON config for `models` whose tables are in `tables`; returns `path`."""
    entries = []
    for name, spec in models.items():
        entry = {
            "model": name,
            "sparse_files": [tables[(name, t)][0] for t in range(len(spec["tables"]))],
            "num_of_worker_buffer_in_pool": 2,
            "embedding_table_names": ["sparse_embedding%d" % t for t in range(len(spec["tables"]))],
            "embedding_vecsize_per_table": [dim for _, dim in spec["tables"]],
            "maxnum_catfeature_query_per_table_per_sample": spec["maxnum"],
            "default_value_for_each_table": spec["default"],
            "deployed_device_list": [0],
            "max_batch_size": spec["max_batch_size"],
            "cache_refresh_percentage_per_iteration": 0.2,
            "hit_rate_threshold": 1.0,
            "gpucacheper": 0.5,
            "gpucache": True,
        }
        entry.update(overrides)
        entries.append(entry)
    with open(path, "w") as f:
        json.dump({"supportlonglong": supportlonglong, "models": entries}, f, indent=2)
    return path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hps"))


@pytest.fixture(scope="session")
def tables(workdir):
    return make_tables(workdir)


@pytest.fixture(scope="session")
def config_file(workdir, tables):
    return make_config(os.path.join(workdir, "ps.json"), tables)


@pytest.fixture(scope="session")
def hps(config_file):
    """The package, with this process's parameter server initialized from `config_file`."""
    import hierarchical_parameter_server as hps

    assert hps.Init(global_batch_size=1024, ps_config_file=config_file) == "OK"
    return hps


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def subprocess_env():
    """The environment of subprocesses: `conftest` importable (for make_tables/make_config), and the source
    tree first when testing it against HPS_LIBRARY_PATH."""
    env = dict(os.environ)
    paths = [TESTS_DIR]
    if os.environ.get("HPS_LIBRARY_PATH"):
        paths.insert(0, SOURCE_DIR)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


@pytest.fixture
def run_python():
    """Runs a Python script in a fresh interpreter (fresh parameter server); returns its stdout. Fails the
    test with the script's output when it exits non-zero."""

    def run(code, timeout=600, cwd=None):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=subprocess_env(),
            cwd=cwd,
        )
        if proc.returncode != 0:
            pytest.fail("subprocess failed (rc %d)\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr[-8000:]))
        return proc.stdout

    return run
