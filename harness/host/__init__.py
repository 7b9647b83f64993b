"""The host model: what the harness reads from a host, from its live root or from a snapshot of it."""
