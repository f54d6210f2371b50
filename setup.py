"""Build step of the hierarchical_parameter_server wheel: compiles the Swift libraries and ships them.

`pip install .` runs

    swift build -c release --product hierarchical_parameter_server -Xswiftc -static-stdlib --scratch-path .build-python
    swift build -c release --product HPSCAPI -Xswiftc -static-stdlib --scratch-path .build-python
    swift build -c release --product hps -Xswiftc -static-stdlib --scratch-path .build-python

in this directory and copies into the package's `lib/`: `libhierarchical_parameter_server.so`, the TensorFlow
op library (TensorFlow's C API is resolved when TensorFlow loads it), and `libhps.so`, the C API of
include/hps.h that the PyTorch layers call through ctypes — and `bin/hps`, the CLI (the `hps` console script runs
it), and `include/hps.h`. All are self-contained as far as Swift goes: the Swift runtime and Foundation are linked
in statically. They still link RocksDB and hiredis (and their compression libraries): `scripts/build-wheel.sh`
bundles those with `auditwheel repair`, so the wheel it makes needs nothing outside glibc and libstdc++.

The wheel is tagged `py3-none-<platform>`: nothing links libpython.

Environment:
    HPS_PREBUILT_LIBRARY=path   ship this op library instead of building (e.g. a CI artifact)
    HPS_PREBUILT_C_LIBRARY=path ship this libhps.so instead of building
    HPS_PREBUILT_CLI=path       ship this hps executable instead of building
    HPS_STRIP=1                 strip the shipped binaries
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

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

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
        cli = build_library("hps", "hps", "HPS_PREBUILT_CLI")
        package = os.path.join(self.build_lib, "hierarchical_parameter_server")
        for folder in ("lib", "bin", "include"):
            os.makedirs(os.path.join(package, folder), exist_ok=True)
        shutil.copy2(op_library, os.path.join(package, "lib", LIBRARY))
        shutil.copy2(c_library, os.path.join(package, "lib", C_LIBRARY))
        shutil.copy2(cli, os.path.join(package, "bin", "hps"))
        shutil.copy2(os.path.join(ROOT, "include", "hps.h"), os.path.join(package, "include", "hps.h"))
        if os.environ.get("HPS_STRIP") == "1":  # scripts/build-wheel.sh: a smaller wheel (symbols for debugging dropped)
            for path in (os.path.join(package, "lib", LIBRARY), os.path.join(package, "lib", C_LIBRARY), os.path.join(package, "bin", "hps")):
                subprocess.check_call(["strip", "--strip-unneeded", path])


class BinaryDistribution(Distribution):
    """The wheel holds a native library: platform-specific, not pure Python."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Tags the wheel py3-none-<platform>: native code, but no link to libpython, so any CPython 3 takes it."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel}, distclass=BinaryDistribution)
