#!/bin/sh
# tmt prepare on one host: make sure it has hostdev-harness (see plans/fleet.fmf). Runs in the plan's tree
# ($TMT_TREE, this repository's tracked files), whose source it installs.
set -eu
. "$(dirname "$0")/harness.sh"
if [ -n "${HOSTDEV_HARNESS:-}" ]; then
    if [ ! -x "$HOSTDEV_HARNESS" ]; then
        echo "fleet: HOSTDEV_HARNESS=$HOSTDEV_HARNESS is not an executable on $(hostname)" >&2
        exit 2
    fi
    echo "fleet: $(hostname) runs $HOSTDEV_HARNESS ($("$HOSTDEV_HARNESS" --version))"
    exit 0
fi
tree="${TMT_TREE:-$(cd "$(dirname "$0")/.." && pwd)}"
echo "fleet: installing hostdev-harness from $tree into $FLEET_VENV on $(hostname)"
# The Debian packages the README lists (libvirt, QEMU, build tools for libvirt-python), then a venv.
make -C "$tree" --no-print-directory deps
[ -x "$FLEET_VENV/bin/pip" ] || python3 -m venv "$FLEET_VENV"
"$FLEET_VENV/bin/pip" install -q -U pip
"$FLEET_VENV/bin/pip" install -q "$tree"
echo "fleet: $(hostname) runs $harness ($("$harness" --version))"
