"""Reports, all rendered from one model, the report.json document (``run_report``): JUnit for CI (``junit``),
HTML a person reads (``html``), summary.txt (``summary``), the fleet view (``fleet``); ``reporter`` is the
pytest plugin that writes them. A new format is one renderer of that document."""
