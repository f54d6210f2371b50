"""The ``hps`` console script: runs the CLI this package ships (``bin/hps``, the Swift runtime linked in)."""

import os
import sys


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "hps")
    if not os.path.isfile(path):
        sys.exit("hps: %s is missing: this installation of hierarchical_parameter_server has no CLI; reinstall it" % path)
    if not os.access(path, os.X_OK):
        sys.exit("hps: %s is not executable: reinstall hierarchical_parameter_server, or chmod +x it" % path)
    os.execv(path, [path] + sys.argv[1:])


if __name__ == "__main__":
    main()
