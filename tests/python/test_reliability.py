"""A second Init op with another configuration keeps returning "OK" (as NVIDIA's does) but warns, naming both
configuration files.

The later calls run inside tf.function so that they reach the op (eagerly, the package answers a repeated
hps.Init from its cached status without running the op)."""


def test_second_init_with_another_config_warns_naming_both_files(run_python, tmp_path):
    out = run_python(
        """
        import os
        import tensorflow as tf
        import hierarchical_parameter_server as hps
        from conftest import make_config, make_tables
        work = %r
        tables = make_tables(work)
        first = make_config(os.path.join(work, "first.json"), tables)
        second = make_config(os.path.join(work, "second.json"), tables)
        log = os.path.join(work, "stderr.txt")
        saved = os.dup(2)
        with open(log, "w") as f:
            os.dup2(f.fileno(), 2)
            try:
                assert hps.Init(global_batch_size=1024, ps_config_file=first) == "OK"
                again = tf.function(lambda path: hps.Init(global_batch_size=1024, ps_config_file=path))
                assert again(first).numpy() == b"OK"
                assert tf.function(lambda: hps.Init(global_batch_size=1024, ps_config_file=second))().numpy() == b"OK"
            finally:
                os.dup2(saved, 2)
        text = open(log).read()
        warnings = [line for line in text.splitlines() if "is ignored" in line]
        assert len(warnings) == 1, text
        assert second in warnings[0] and first in warnings[0], warnings[0]
        print("warned-once")
        """
        % str(tmp_path)
    )
    assert "warned-once" in out
