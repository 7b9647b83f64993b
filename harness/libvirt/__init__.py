"""Talking to libvirt, and only that: connections, the one rule for a private libvirtd when none answers
(``daemon``), libvirt's facts, device events, guest and network lookups and XML, the XML oracle. It imports
no change kind, guest, lab, plugin or report (``lint-imports``)."""
