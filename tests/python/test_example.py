"""examples/naive_dnn: train → export table → hps.LookupLayer inference SavedModel → deploy; MSE ≤ 1e-6."""

import os
import subprocess
import sys

from conftest import REPO, subprocess_env


def test_naive_dnn_example(tmp_path):
    script = os.path.join(REPO, "examples", "naive_dnn", "naive_dnn.py")
    proc = subprocess.run(
        [sys.executable, script, "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-8000:]
    assert "PASS" in proc.stdout
    assert os.path.getsize(str(tmp_path / "naive_dnn_sparse.model" / "key")) == 30000 * 8
    assert os.path.getsize(str(tmp_path / "naive_dnn_sparse.model" / "emb_vector")) == 30000 * 16 * 4
