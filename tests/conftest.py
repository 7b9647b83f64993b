from __future__ import annotations

# The nested tier's lab fixtures and markers (harness_lab_spec, harness_lab_device).
pytest_plugins = ["pytester", "harness.lab.pytest_plugin"]
