# Sourced by fleet/install.sh and fleet/validate.sh: which hostdev-harness this host runs.
# $HOSTDEV_HARNESS (a path) wins; else the venv fleet/install.sh makes.
FLEET_VENV="${HOSTDEV_FLEET_VENV:-/var/lib/hostdev-harness/venv}"
harness="${HOSTDEV_HARNESS:-$FLEET_VENV/bin/hostdev-harness}"
