"""Build step of the hierarchical_parameter_server wheel: compiles the Swift op library and ships it.

`pip install .` runs

    swift build -c release --product hierarchical_parameter_server -Xswiftc -static-stdlib --scratch-path .build-python

in this directory and copies `libhierarchical_parameter_server.so` (self-contained: the Swift runtime is
linked in statically; TensorFlow's C API is resolved when TensorFlow loads it) into the package's `lib/`.

Environment:
    HPS_PREBUILT_LIBRARY=path   ship this .so instead of building (e.g. a CI artifact)
    HPS_SWIFT=path              the swift executable (default: `swift` on PATH)
    HPS_SWIFT_BUILD_ARGS="..."  extra arguments for `swift build`
"""

import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))
LIBRARY = "libhierarchical_parameter_server.so"
SCRATCH = os.path.join(ROOT, ".build-python")


def build_library():
    prebuilt = os.environ.get("HPS_PREBUILT_LIBRARY")
    if prebuilt:
        if not os.path.isfile(prebuilt):
            raise FileNotFoundError("HPS_PREBUILT_LIBRARY=%s does not exist" % prebuilt)
        return prebuilt
    swift = os.environ.get("HPS_SWIFT") or shutil.which("swift")
    if not swift:
        raise RuntimeError(
            "The HPS op library is written in Swift: install a Swift toolchain (swift.org, 6.0 or newer) "
            "or set HPS_PREBUILT_LIBRARY to a built %s" % LIBRARY
        )
    command = [
        swift, "build", "-c", "release",
        "--product", "hierarchical_parameter_server",
        "-Xswiftc", "-static-stdlib",
        "--scratch-path", SCRATCH,
    ] + shlex.split(os.environ.get("HPS_SWIFT_BUILD_ARGS", ""))
    print("building the op library:", " ".join(command), flush=True)
    subprocess.check_call(command, cwd=ROOT)
    bin_path = subprocess.check_output(command + ["--show-bin-path"], cwd=ROOT, text=True).strip().splitlines()[-1]
    path = os.path.join(bin_path, LIBRARY)
    if not os.path.isfile(path):
        raise FileNotFoundError("swift build finished but %s is missing" % path)
    return path


class BuildPyWithLibrary(build_py):
    """build_py that also compiles the Swift op library into hierarchical_parameter_server/lib/."""

    def run(self):
        super().run()
        library = build_library()
        target_dir = os.path.join(self.build_lib, "hierarchical_parameter_server", "lib")
        os.makedirs(target_dir, exist_ok=True)
        shutil.copy2(library, os.path.join(target_dir, LIBRARY))


class BinaryDistribution(Distribution):
    """The wheel holds a native library: platform-specific, not pure Python."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
