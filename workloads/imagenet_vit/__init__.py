"""ImageNet ViT-S/16 (AlgoPerf's ``imagenet_vit``) and its glu, post_ln and map variants."""

from .workload import (
    ImagenetVitGluWorkload,
    ImagenetVitMapWorkload,
    ImagenetVitPostLNWorkload,
    ImagenetVitWorkload,
)

WORKLOADS = {
    "imagenet_vit": ImagenetVitWorkload,
    "imagenet_vit_glu": ImagenetVitGluWorkload,
    "imagenet_vit_post_ln": ImagenetVitPostLNWorkload,
    "imagenet_vit_map": ImagenetVitMapWorkload,
}
