"""Importing the PyTorch front end does not import TensorFlow, and the reverse."""

import importlib.util

import pytest

from hps_torch_testing import run_script

needs_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")


def test_torch_part_does_not_import_tensorflow():
    out = run_script(
        """
        import sys
        import hierarchical_parameter_server.torch as hps_torch
        import hierarchical_parameter_server as hps
        hps.export_table  # the table helpers need neither framework
        assert hps.torch is hps_torch
        assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if "tensorflow" in m)[:5]
        print("no-tensorflow")
        """
    ).stdout
    assert "no-tensorflow" in out


@needs_tensorflow
def test_tensorflow_part_does_not_import_torch():
    out = run_script(
        """
        import sys
        import numpy as np, tempfile, os
        import hierarchical_parameter_server as hps
        assert "tensorflow" not in sys.modules  # not even the package root loads it
        hps.Init, hps.LookupLayer, hps.SparseLookupLayer, hps.hps_lib
        assert "tensorflow" in sys.modules
        hps.export_table(os.path.join(tempfile.mkdtemp(), "t"), np.ones((3, 2), np.float32))
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))[:5]
        print("no-torch")
        """
    ).stdout
    assert "no-torch" in out


def test_package_root_lists_the_lazy_names():
    out = run_script(
        """
        import hierarchical_parameter_server as hps
        names = dir(hps)
        assert {"Init", "LookupLayer", "SparseLookupLayer", "hps_lib", "export_table", "torch"} <= set(names), names
        try:
            hps.NoSuchThing
        except AttributeError as e:
            assert "NoSuchThing" in str(e)
            print("attribute-error")
        """
    ).stdout
    assert "attribute-error" in out


@needs_tensorflow
def test_op_library_registers_when_tensorflow_comes_second():
    """A SavedModel with HPS ops needs the op library registered: it is, whether TensorFlow is imported
    before or after the package (and importing the package alone loads neither)."""
    for first, second in (("hierarchical_parameter_server", "tensorflow"), ("tensorflow", "hierarchical_parameter_server")):
        out = run_script(
            """
            import sys
            import %s
            import %s
            assert "hierarchical_parameter_server.core.hps_lib" in sys.modules
            assert "torch" not in sys.modules
            from tensorflow.python.framework import op_def_registry
            assert op_def_registry.get("Init") is not None and op_def_registry.get("Lookup") is not None
            print("registered")
            """
            % (first, second)
        ).stdout
        assert "registered" in out, (first, second)
