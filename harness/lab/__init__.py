"""The built-in nested host: a QEMU machine with an emulated IOMMU and SR-IOV devices."""
