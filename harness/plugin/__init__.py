"""The pytest plugin's hooks: options read once, markers, orphan recovery around the session, the reporter.

The package is thin, like pytest-xdist's: ``options`` (the one frozen options value), ``fixtures`` (the host,
libvirt and change fixtures), ``devices`` (the run's allowlisted and collected devices), ``matrix`` (how much
of a test × device matrix runs) and ``newhooks`` (the project's own hook specs).
"""

from __future__ import annotations

import pytest

from harness.changes.journal import ChangeJournal, Owner
from harness.changes.protocol import recover_host
from harness.errors import HarnessError, HarnessInputError
from harness.plugin import newhooks
from harness.plugin.options import add_options, options, owner_key
from harness.report.reporter import HarnessReporter

# One concern per module: the fixtures, and how much of a test × device matrix runs.
pytest_plugins = ["harness.plugin.fixtures", "harness.plugin.matrix"]

reporter_key = pytest.StashKey[HarnessReporter]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(newhooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before hypothesis's own plugin loads the chosen profile. Only then: importing hypothesis takes
    # seconds (ten in a lab's TCG), and only the XML suites use it.
    if config.getoption("--hypothesis-profile", None):
        from harness.hypothesis_profiles import register_profiles, require_profile

        register_profiles()
        try:
            require_profile(str(config.getoption("--hypothesis-profile")))
        except HarnessInputError as exc:
            raise pytest.UsageError(f"hostdev-harness: {exc}") from None
    config.addinivalue_line(
        "markers", "harness_destructive: changes device bindings (needs allowlisted devices)"
    )
    run = options(config)
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:  # an xdist worker: the controller named the run
        config.stash[owner_key] = Owner.this_process(worker_input["harness_run_id"], worker_input["workerid"])
    else:
        config.stash[owner_key] = Owner.this_process()
        reporter = HarnessReporter(config, run.report_dir, run.snapshot)
        config.stash[reporter_key] = reporter
        config.pluginmanager.register(reporter, "harness-reporter")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistRunId(config.stash[owner_key].run_id), "harness-xdist")


class XdistRunId:
    """Hands the run's id to each xdist worker, so its journal entries name the same run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def pytest_configure_node(self, node: object) -> None:
        node.workerinput["harness_run_id"] = self.run_id  # type: ignore[attr-defined]


def _recover_orphans(config: pytest.Config, when: str) -> None:
    """Undo what owners that are gone left in the journal: once, on the controller (or the only process)."""
    run = options(config)
    if hasattr(config, "workerinput") or run.snapshot:
        return
    try:
        recovery = recover_host(ChangeJournal(run.journal), run.uri)
    except HarnessError as exc:
        raise pytest.UsageError(f"hostdev-harness: {when}: {exc}") from None
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    for line in recovery.undone:
        message = f"hostdev-harness: {when}, restored after an interrupted run: {line}"
        if terminal is not None:
            terminal.write_line(message, yellow=True)
        if reporter_key in config.stash:
            config.stash[reporter_key].restored.append(line)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _recover_orphans(session.config, "before the run")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # A worker that died mid-test left its changes; every worker is gone now, so they are orphans.
    _recover_orphans(session.config, "after the run")
