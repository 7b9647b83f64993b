#!/bin/sh
# Run by tmt on one host: the shipped suites through `hostdev-harness validate`, reports into tmt's data folder.
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/hostdev-harness ] || make venv >/dev/null
reports="${TMT_TEST_DATA:-reports}"
exec .venv/bin/hostdev-harness validate --report-dir "$reports" "$@" -- -q -p no:cacheprovider
