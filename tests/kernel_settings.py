"""Settings of a kernel kept in a module of their own, read as ``kernel_settings.PASSES``
(tests/subset_kernels.py): the fence inlines them as it inlines a module's own constants."""

PASSES = 2
