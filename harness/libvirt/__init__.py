"""The libvirt layer: connections, a private daemon when none answers, and domain capabilities."""
