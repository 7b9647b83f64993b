#!/bin/sh
# Run by tmt on one host: the shipped suites through `hostdev-harness validate`, reports into tmt's data
# folder (tmt copies it back). HOSTDEV_FLEET_SUITES picks suites ("preparation,inventory"; empty: all).
set -eu
. "$(dirname "$0")/harness.sh"
if [ ! -x "$harness" ]; then
    echo "fleet: no hostdev-harness at $harness on $(hostname): run the plan's prepare step" \
        "(fleet/install.sh) or set HOSTDEV_HARNESS" >&2
    exit 2
fi
suites=""
for suite in $(echo "${HOSTDEV_FLEET_SUITES:-}" | tr "," " "); do suites="$suites --suite $suite"; done
reports="${TMT_TEST_DATA:-reports}"
# shellcheck disable=SC2086  # $suites is a list of words
exec "$harness" validate --report-dir "$reports" $suites "$@" -- -q -p no:cacheprovider
