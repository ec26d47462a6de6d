"""v0.5's ``algorithmic_efficiency`` package, as far as published JAX submissions use it.

A submission's ``import algorithmic_efficiency...`` lands here (``algoperf.compat.imports``);
nothing is installed under that name in site-packages. ``spec`` IS ``algoperf.spec`` (the
same enums and classes, so ``spec.ForwardPassMode.TRAIN`` means to our workloads what it
means to the submission).
"""

from algoperf import spec
from algoperf.compat.algorithmic_efficiency import random_utils

# The v0.5 modules emulated here; an import of any other one is refused by name.
PROVIDED = ("spec", "random_utils")

__all__ = ["spec", "random_utils", "PROVIDED"]
