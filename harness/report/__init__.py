"""Reports: JUnit properties for CI, a summary for a person."""
