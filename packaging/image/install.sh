#!/bin/sh
# The container image's install steps, run by the Dockerfile and by tests/integration/test_image_install.py,
# so the image and the test cannot drift apart.
#
#   install.sh wheel SRC WHEELS    build the agent's wheel from the source tree SRC and put it, with a wheel of
#                                  every dependency (from the package index), in WHEELS
#   install.sh install WHEELS VENV create the virtualenv VENV and install the agent from WHEELS alone
#                                  (no index, nothing compiled), then check that `agent --version` runs
#
# PYTHON picks the interpreter (default python3). pip's own settings come from the environment
# (the Dockerfile sets PIP_NO_CACHE_DIR and PIP_DISABLE_PIP_VERSION_CHECK).
set -eu

PYTHON=${PYTHON:-python3}

usage() {
    echo "usage: $0 wheel SRC WHEELS | install WHEELS VENV" >&2
    exit 2
}

[ $# -eq 3 ] || usage
case "$1" in
wheel)
    # Binary wheels only for the dependencies (a compiler is never needed, here or in the final image);
    # the agent itself is pure Python and built from SRC.
    "$PYTHON" -m pip wheel --only-binary=:all: --wheel-dir "$3" "$(cd "$2" && pwd)"
    ;;
install)
    "$PYTHON" -m venv "$3"
    "$3/bin/python" -m pip install --no-index --find-links "$2" agent
    "$3/bin/agent" --version
    ;;
*)
    usage
    ;;
esac
