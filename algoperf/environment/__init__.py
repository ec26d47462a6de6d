"""``algoperf env``: what this machine, and every node of a Ray cluster, runs.

A campaign's results are comparable only if its trials ran on the same software and the
same kind of device. This module gathers, per machine: devices (from JAX, or from
nvidia-smi when JAX must not touch busy GPUs), the versions of the packages a result
depends on, what the docker image recorded at build time (docker/Dockerfile writes
/etc/algoperf/versions.json), the Ray address and token setup, and the MLflow tracking
URI. With a Ray cluster it runs one tiny task on every alive node, pinned there with
``NodeAffinitySchedulingStrategy``, and :func:`mismatches` turns the node reports into
warnings: different versions, different device kinds among the nodes trials can run on,
or a node that offers Ray GPUs its JAX cannot see.

Modules: :mod:`.facts` (one machine, its endpoints), :mod:`.cluster` (every node of a
Ray cluster), :mod:`.compare` (the warnings), :mod:`.report` (``algoperf env``'s report
and its printing), :mod:`.image_record` (the image's build record, written by the build
step as ``python -m algoperf.environment write-image-record``).
"""

from algoperf.environment.cluster import HEAD_RESOURCE, ClusterError, gather_cluster
from algoperf.environment.compare import DRIVER_COMPARED, local_warnings, mismatches
from algoperf.environment.facts import (
    PLUGINS,
    image_summary,
    node_facts,
    package_versions,
    ray_auth_facts,
    resolve_address,
    tracking_facts,
)
from algoperf.environment.image_record import main, write_image_record
from algoperf.environment.report import gather, print_report

__all__ = [
    "DRIVER_COMPARED", "HEAD_RESOURCE", "PLUGINS", "ClusterError", "gather", "gather_cluster",
    "image_summary", "local_warnings", "main", "mismatches", "node_facts", "package_versions",
    "print_report", "ray_auth_facts", "resolve_address", "tracking_facts", "write_image_record",
]
