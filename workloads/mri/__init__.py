"""Phantom MRI: U-Net reconstruction of 4x-undersampled k-space (fastMRI's small twin)."""

from .workload import MriTanhWorkload, MriWorkload

WORKLOADS = {"mri": MriWorkload, "mri_tanh": MriTanhWorkload}
