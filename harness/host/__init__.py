"""The host model: what the harness reads from a host, from its live root or from a snapshot of it, through
one ``HostRoot`` (``root``), with the one sysfs path helper (``sysfs``). Readers only: changes live in
:mod:`harness.changes`; a new reader's files must be captured by ``snapshot``."""
