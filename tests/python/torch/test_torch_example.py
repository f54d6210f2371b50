"""examples/torch_dlrm: train with nn.EmbeddingBag → export → serve through hps.torch layers; equal outputs."""

import os
import subprocess
import sys

from hps_torch_testing import REPO, subprocess_env


def test_torch_dlrm_example(tmp_path):
    script = os.path.join(REPO, "examples", "torch_dlrm", "run.py")
    proc = subprocess.run(
        [sys.executable, script, "--workdir", str(tmp_path), "--steps", "100"],
        capture_output=True, text=True, timeout=600, env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-8000:]
    assert "PASS" in proc.stdout
    for t, rows in enumerate([5000, 2000, 800, 300]):
        assert os.path.getsize(str(tmp_path / ("feature%d" % t) / "key")) == rows * 8
        assert os.path.getsize(str(tmp_path / ("feature%d" % t) / "emb_vector")) == rows * 16 * 4
