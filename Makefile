# hostdev-harness: every target installs what it needs, quietly and idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the harness and the nested host need on the machine that runs them
# (mmdebstrap: the lab unpacks a newer QEMU with it where this one has no igb; gcc, pkg-config, libvirt-dev and
# python3-dev: pip builds libvirt-python from source, and a fresh Debian has no Python.h).
DEB_PACKAGES := libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config \
	qemu-system-x86 qemu-utils udev kmod cpio busybox-static pciutils pci.ids iproute2 python3-venv gcc \
	virtinst mmdebstrap python3-dev
# Only for the project's own tests: the HTML report is rendered by headless Chromium in tests/test_reports.py;
# the fleet test drives tmt over SSH (ssh, ssh-keygen) and tmt copies its tree with rsync.
# apt-file with its index: tmt's prepare always asks apt-file which package has /usr/bin/flock (installing
# apt-file first); the fleet lab has no network and shares this root, so both must already be here.
TEST_DEB_PACKAGES := chromium openssh-client rsync apt-file
PYTEST_ARGS ?=

.PHONY: deps test-deps venv demo validate test test-fast lint snapshot mutation clean

# $(call install_debs,PACKAGES): apt-get install whichever of PACKAGES are not installed yet.
define install_debs
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(1) 2>/dev/null | awk '$$4!="installed"{print $$1}'; \
	  for p in $(1); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$(echo $$missing | tr '\n' ' ')"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps: .cache/deps.stamp
.cache/deps.stamp: Makefile
	@mkdir -p .cache
	$(call install_debs,$(DEB_PACKAGES))
	@touch $@

test-deps: .cache/test-deps.stamp
.cache/test-deps.stamp: Makefile .cache/deps.stamp
	$(call install_debs,$(TEST_DEB_PACKAGES))
	@apt-file search --package-only /usr/bin/flock 2>/dev/null | grep -qx util-linux || { \
	  echo "refreshing apt-file's index (tmt looks up /usr/bin/flock with it)"; apt-file update >/dev/null; }
	@touch $@

# The harness's bytecode is written here, where it takes a second: L1 sees the checkout read-only, so each
# Python started there would compile every module again under TCG (2 s per process, measured).
venv: $(VENV)/.stamp
	@$(BIN)/python -m compileall -q -j 0 harness >/dev/null
$(VENV)/.stamp: pyproject.toml .cache/deps.stamp
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq -U pip
	@$(BIN)/pip install -qq -e '.[dev,fleet]'  # fleet: tmt, for the fleet plan's tests
	@touch $@

# The main job: every suite against the built-in nested host, reports in reports/.
# Under TCG inside TCG a guest start takes tens of seconds: the demo runs each assignment test once and each
# device at least once (DEMO_MATRIX=--harness-matrix=full for the whole cross product).
DEMO_MATRIX ?= --harness-matrix=cover
# The XML suites need no host (libvirt's test:///default runs in-process): they run here, where they take
# seconds, not minutes under TCG inside L1; their reports go to reports/xml/. L1 runs no hypothesis test, and
# hypothesis's plugin would import hypothesis for its summary (13 s under TCG): it is left out there.
demo: venv
	$(BIN)/pytest $(XML_SUITES) --hypothesis-profile=ci --harness-report-dir=reports/xml $(PYTEST_ARGS)
	$(BIN)/hostdev-lab run fixtures/labs/default.toml -- $(abspath $(BIN))/pytest suites $(XML_SUITES:%=--ignore=%) -p no:hypothesispytest $(DEMO_MATRIX) $(PYTEST_ARGS)

# Every suite against the machine this runs on (read-only unless --harness-allow names devices).
validate: venv
	$(BIN)/pytest suites --hypothesis-profile=ci $(PYTEST_ARGS)

# The shipped XML suites need no libvirtd (test:///default runs in-process) and take seconds:
# run with the project's tests so a serializer regression fails `make test`.
XML_SUITES := suites/test_xml_roundtrip.py suites/test_xml_corpus.py

# The project's own tests: lint, types, the fast tier, the XML suites and the nested tier.
test: venv test-deps lint
	$(BIN)/pytest tests $(XML_SUITES) --hypothesis-profile=ci --harness-report-dir=.cache/test-reports $(PYTEST_ARGS)

test-fast: venv test-deps
	$(BIN)/pytest tests $(XML_SUITES) -m 'not nested' --hypothesis-profile=ci --harness-report-dir=.cache/test-reports $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Mutation testing (not in CI): one change at a time to harness/checks, guard, journal and xml ([tool.mutmut]),
# each mutant against the fast-tier tests that run its function (mutmut records which, in one first pass).
# About 0.3 mutants/s on 2 shared cores: ~15 min per check function, hours for all 5800; the last score is
# in README.md (Mutation score). Narrow it with MUTANTS='harness.checks.preparation.x_next_boot*' (a name
# pattern; explicit names are rerun); results are cached in mutants/ between runs.
MUTANTS ?=
mutation: venv
	@mkdir -p mutants && ln -sfn ../fixtures mutants/fixtures
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	@$(BIN)/mutmut results

snapshot: venv
	$(BIN)/hostdev-harness snapshot fixtures/hosts/$${NAME:-$$(hostname)}

clean:
	rm -rf $(VENV) .cache reports/*.xml reports/*.txt
