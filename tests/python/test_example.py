"""The workflow examples (examples/naive_dnn, sok_dlrm, pretrained_embeddings) run and pass their own checks."""

import importlib.util
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


def _run_example(name, tmp_path, *extra):
    script = os.path.join(REPO, "examples", name, "run.py")
    proc = subprocess.run(
        [sys.executable, script, "--workdir", str(tmp_path), *extra],
        capture_output=True, text=True, timeout=600, env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-8000:]
    assert "PASS" in proc.stdout
    return proc.stdout


def test_sok_dlrm_example(tmp_path):
    """examples/sok_dlrm: DLRM → SOK-format dumps served unchanged → SavedModel in a fresh process; predictions equal."""
    out = _run_example("sok_dlrm", tmp_path)
    for table in ("users", "items", "genres"):
        dump = tmp_path / ("dlrm_sparse_%s.model" % table)
        assert sorted(os.listdir(str(dump))) == ["EmbeddingVariable_keys.file", "EmbeddingVariable_values.file"]
        assert os.path.getsize(str(dump / "EmbeddingVariable_values.file")) == os.path.getsize(
            str(dump / "EmbeddingVariable_keys.file")) * 16 * 4 // 8
    has_movielens = importlib.util.find_spec("recbole") is not None  # its wheel ships MovieLens-100K
    assert ("MovieLens-100K" in out) == has_movielens, out


def test_pretrained_embeddings_example(tmp_path):
    """examples/pretrained_embeddings: frozen hps.LookupLayer in model.fit under MirroredStrategy (2 CPU replicas)."""
    out = _run_example("pretrained_embeddings", tmp_path)
    assert "MirroredStrategy over 2 replicas" in out
    assert "embeddings seen by the model == table files: True" in out
