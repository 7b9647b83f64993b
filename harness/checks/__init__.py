"""Preparation checks: is a host ready for PCI device assignment, and if not, why and what to do."""
