"""What the tests that start `hps` processes share: the binary, free loopback ports, table files and configs,
`hps serve` started, awaited and stopped, and a fixture that stops every server a test started.

A plain module, imported by path (`sys.path.insert(0, <tests/support>)`), not a conftest.py: tests/python has a
conftest that its tests import by name, and pytest runs every test directory in one session."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hps_binary():
    """The `hps` CLI: $HPS_BIN, else the release build of this tree."""
    for candidate in (os.environ.get("HPS_BIN"), os.path.join(REPO, ".build/release/hps")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no hps binary: run scripts/setup.sh (or set HPS_BIN)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_table(path, keys, vectors):
    """A table directory: `key` (int64) and `emb_vector` (float32), little-endian."""
    os.makedirs(path, exist_ok=True)
    np.asarray(keys, dtype="<i8").tofile(os.path.join(path, "key"))
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(path, "emb_vector"))


def write_config(path, config):
    """`config` as JSON at `path`; returns `path`."""
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def wait_until(predicate, timeout, what):
    """Polls `predicate` every 0.1 s; fails the test naming `what` when it is not true within `timeout` s."""
    deadline = time.time() + timeout
    while True:
        if predicate():
            return
        if time.time() > deadline:
            pytest.fail("not within %.0f s: %s" % (timeout, what))
        time.sleep(0.1)


def terminate(proc, timeout):
    """Stops `proc` with SIGTERM, or SIGKILL when it has not exited after `timeout` s; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Server:
    """`hps serve --config CONFIG ARGS…` on free loopback ports (HTTP, gRPC, /metrics: several servers run at
    once, and none may take Triton's defaults), its output in DIRECTORY/NAME-PORT.log. Returns once the HTTP
    endpoint is ready, and with `grpc=True` once the gRPC endpoint, which binds beside it, is live too."""

    def __init__(self, config, directory, *args, name="serve", log_level="warning", grpc=False):
        self.port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.url = "127.0.0.1:%d" % self.port  # host:port, as tritonclient takes it
        self.grpc_url = "127.0.0.1:%d" % self.grpc_port
        self.metrics_url = "127.0.0.1:%d" % self.metrics_port
        self.log_path = os.path.join(str(directory), "%s-%d.log" % (name, self.port))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [hps_binary(), "serve", "--config", config, "--http-port", str(self.port),
             "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, HPS_LOG_LEVEL=log_level))
        self._wait_ready()
        if grpc:
            self._wait_grpc_live()

    def _wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("hps serve exited with %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                if self.request("GET", "/v2/health/ready", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("hps serve not ready after %d s:\n%s" % (timeout, self.output()))
            time.sleep(0.1)

    def _wait_grpc_live(self, timeout=30):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.time() + timeout
        try:
            while True:
                try:
                    if client.is_server_live():
                        return
                except InferenceServerException:
                    pass
                assert time.time() < deadline, "gRPC endpoint not live after %d s:\n%s" % (timeout, self.output())
                time.sleep(0.05)
        finally:
            client.close()

    def output(self):
        """Everything the server wrote so far."""
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, body, headers) of an HTTP request; an error status is returned, not raised."""
        req = urllib.request.Request("http://" + self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post_json(self, path, obj, headers=None):
        return self.request("POST", path, json.dumps(obj).encode(), dict({"Content-Type": "application/json"}, **(headers or {})))

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM, then SIGKILL after 30 s; returns the exit status."""
        status = terminate(self.proc, 30)
        self.log.close()
        return status


def serve_fixture(server_class=Server, **options):
    """A `serve` fixture: `serve(config, *args, **more)` starts `server_class(config, tmp_path, *args,
    **options, **more)`; every server it started is stopped when the test ends."""

    @pytest.fixture
    def serve(tmp_path):
        servers = []

        def start(config, *args, **more):
            server = server_class(config, tmp_path, *args, **dict(options, **more))
            servers.append(server)
            return server

        yield start
        for server in servers:
            server.stop()

    return serve
