"""Shared pieces of the PyTorch front-end tests (imported by the test modules; no conftest here, so the
parent directory's `conftest` module stays the only one).

This process's HPS server (process-wide, built once) is initialised from the parent conftest's
`config_file` (models foo: 3000×16, bar: 5000×64 and 2000×32; int64 keys); tests that need another
configuration run a script in a fresh interpreter with `run_python`.

To test the source tree against a library built with `swift build --product HPSCAPI`, set HPS_C_LIBRARY to
the .so: `python/` is then put first on sys.path (and on PYTHONPATH of subprocesses).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TESTS_DIR))
SOURCE_DIR = os.path.join(REPO, "python")

if os.environ.get("HPS_C_LIBRARY") and SOURCE_DIR not in sys.path:
    sys.path.insert(0, SOURCE_DIR)

import torch
if not hasattr(torch, "Tensor"):  # the tests/python/torch folder itself, seen as a namespace package
    raise ImportError("PyTorch is not installed (scripts/setup.sh installs torch==2.13.0+cpu into .venv)")

import torch.nn.functional as F  # noqa: E402

import hierarchical_parameter_server.torch as hps_torch  # noqa: E402

# The parent conftest's default values per (model, table).
DEFAULTS = {("foo", 0): 1.0, ("bar", 0): 0.25, ("bar", 1): -2.0}


def subprocess_env():
    env = dict(os.environ)
    paths = [TESTS_DIR, HERE]
    if os.environ.get("HPS_C_LIBRARY") or os.environ.get("HPS_LIBRARY_PATH"):
        paths.insert(0, SOURCE_DIR)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("HPS_LOG_LEVEL", "warning")
    return env


def run_script(code, timeout=600, expect_ok=True):
    """Runs `code` in a fresh interpreter; returns the CompletedProcess (fails the test on rc != 0 when
    `expect_ok`)."""
    import textwrap

    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=subprocess_env()
    )
    if expect_ok and proc.returncode != 0:
        pytest.fail("subprocess failed (rc %d)\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr[-8000:]))
    return proc


def with_default(array, default, extra=8):
    """The table as a torch tensor with `extra` more rows holding the default value: ids rows..rows+extra-1
    stand for keys the table does not have."""
    table = torch.from_numpy(np.ascontiguousarray(array))
    pad = torch.full((extra, table.shape[1]), float(default), dtype=torch.float32)
    return torch.cat([table, pad])


def reference_ids(ids, rows):
    """Maps every key outside [0, rows) to the first padding row of `with_default`."""
    return torch.where((ids >= 0) & (ids < rows), ids.long(), torch.full_like(ids.long(), rows))


@pytest.fixture(scope="session")
def served(config_file, tables):
    """{(model, table): numpy array} with this process's server initialised from `config_file`."""
    assert hps_torch.Init(config_file) == "OK"
    return {key: array for key, (_, array) in tables.items()}


def assert_close_relative(actual, expected, rel=1e-6):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1.0)
    diff = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert diff <= rel * scale, "max abs difference %g > %g" % (diff, rel * scale)
