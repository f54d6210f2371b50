"""Build step of the hierarchical_parameter_server wheel: compiles the Swift libraries and ships them.

`pip install .` runs

    swift build -c release --product hierarchical_parameter_server -Xswiftc -static-stdlib --scratch-path .build-python
    swift build -c release --product HPSCAPI -Xswiftc -static-stdlib --scratch-path .build-python

in this directory and copies into the package's `lib/`: `libhierarchical_parameter_server.so`, the TensorFlow
op library (TensorFlow's C API is resolved when TensorFlow loads it), and `libhps.so`, the C API of
include/hps.h that the PyTorch layers call through ctypes. Both are self-contained: the Swift runtime is linked
in statically.

Environment:
    HPS_PREBUILT_LIBRARY=path   ship this op library instead of building (e.g. a CI artifact)
    HPS_PREBUILT_C_LIBRARY=path ship this libhps.so instead of building
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
C_LIBRARY = "libhps.so"
SCRATCH = os.path.join(ROOT, ".build-python")


def build_library(product="hierarchical_parameter_server", library=LIBRARY, prebuilt_variable="HPS_PREBUILT_LIBRARY"):
    prebuilt = os.environ.get(prebuilt_variable)
    if prebuilt:
        if not os.path.isfile(prebuilt):
            raise FileNotFoundError("%s=%s does not exist" % (prebuilt_variable, prebuilt))
        return prebuilt
    swift = os.environ.get("HPS_SWIFT") or shutil.which("swift")
    if not swift:
        raise RuntimeError(
            "The HPS op library is written in Swift: install a Swift toolchain (swift.org, 6.0 or newer) "
            "or set HPS_PREBUILT_LIBRARY to a built %s" % LIBRARY
        )
    command = [
        swift, "build", "-c", "release",
        "--product", product,
        "-Xswiftc", "-static-stdlib",
        "--scratch-path", SCRATCH,
    ] + shlex.split(os.environ.get("HPS_SWIFT_BUILD_ARGS", ""))
    print("building the op library:", " ".join(command), flush=True)
    subprocess.check_call(command, cwd=ROOT)
    bin_path = subprocess.check_output(command + ["--show-bin-path"], cwd=ROOT, text=True).strip().splitlines()[-1]
    path = os.path.join(bin_path, library)
    if not os.path.isfile(path):
        raise FileNotFoundError("swift build finished but %s is missing" % path)
    return path


class BuildPyWithLibrary(build_py):
    """build_py that also compiles the Swift op library into hierarchical_parameter_server/lib/."""

    def run(self):
        super().run()
        op_library = build_library()
        c_library = build_library("HPSCAPI", "libHPSCAPI.so", "HPS_PREBUILT_C_LIBRARY")
        target_dir = os.path.join(self.build_lib, "hierarchical_parameter_server", "lib")
        os.makedirs(target_dir, exist_ok=True)
        shutil.copy2(op_library, os.path.join(target_dir, LIBRARY))
        shutil.copy2(c_library, os.path.join(target_dir, C_LIBRARY))


class BinaryDistribution(Distribution):
    """The wheel holds a native library: platform-specific, not pure Python."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
