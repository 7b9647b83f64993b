"""The answering guest: the small L2 guest a hotplug test boots, whose ``/init`` prints its PCI tree on the
serial console. ``image`` (kernel + initramfs + command line), ``protocol`` (the report line, written by the
guest's ``/init`` and read from the serial log), ``machine`` (the libvirt machine and the running guest)."""
