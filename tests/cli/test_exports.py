"""The shipped libraries export no test or benchmark code.

`libhps.so` (the C API, include/hps.h) and `libhierarchical_parameter_server.so` (the TF op library) link
HPS, HPSRuntime and the backends only; the local Redis cluster, the workload twins and the GPU checker
(HPSTestSupport) and the raw baselines (HPSBench) live in their own targets, which only the `hps` CLI and
the Swift tests link. This reads each library's dynamic symbol table with `nm -D --defined-only` and fails
on any symbol whose (mangled) name holds one of those types or modules.

Each library is the newest of: $HPS_CAPI_LIBRARY / $HPS_TF_LIBRARY, the Python package's build folder
(.build-python, see setup.py and scripts/build-capi.sh), the package installed in .venv.
"""

import glob
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FORBIDDEN = [
    "LocalRedisCluster",
    "RedisRawBaseline",
    "RawRocksDB",
    "CUDAWorkload",
    "GPUChecker",
    "HPSTestSupport",
    "HPSBench",
]

LIBRARIES = {
    "libhps.so": ("HPS_CAPI_LIBRARY", ["libHPSCAPI.so", "libhps.so"]),
    "libhierarchical_parameter_server.so": ("HPS_TF_LIBRARY", ["libhierarchical_parameter_server.so"]),
}


def candidates(variable, names):
    found = []
    if os.environ.get(variable):
        found.append(os.environ[variable])
    for name in names:
        found += glob.glob(os.path.join(REPO, ".build-python", "*", "release", name))
        found += glob.glob(os.path.join(REPO, ".build-python", "release", name))
        found += glob.glob(os.path.join(REPO, ".venv", "lib", "python3*", "site-packages", "hierarchical_parameter_server", "lib", name))
    return [path for path in found if os.path.isfile(path)]


def library(name):
    variable, names = LIBRARIES[name]
    found = candidates(variable, names)
    if not found:
        pytest.skip("%s is not built: run scripts/build-capi.sh / pip install . (or set $%s)" % (name, variable))
    return max(found, key=os.path.getmtime)


def defined_symbols(path):
    result = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, "nm -D %s failed: %s" % (path, result.stderr[:2000])
    return [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm (binutils) is not installed")
@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_shipped_library_exports_no_test_or_bench_code(name):
    path = library(name)
    symbols = defined_symbols(path)
    # Sanity: the library does export the product (the C API's functions, the Swift runtime entry points).
    assert len(symbols) > 100, "%s exports only %d symbols" % (path, len(symbols))
    offending = [symbol for symbol in symbols if any(word in symbol for word in FORBIDDEN)]
    assert not offending, "%s exports %d test/bench symbols, e.g.:\n%s" % (path, len(offending), "\n".join(offending[:20]))
