"""ImageNet ResNet-50 (AlgoPerf's ``imagenet_resnet``) and its silu, gelu and large-BN-init variants."""

from .workload import (
    ImagenetResNetGELUWorkload,
    ImagenetResNetLargeBNScaleWorkload,
    ImagenetResNetSiLUWorkload,
    ImagenetResNetWorkload,
)

WORKLOADS = {
    "imagenet_resnet": ImagenetResNetWorkload,
    "imagenet_resnet_silu": ImagenetResNetSiLUWorkload,
    "imagenet_resnet_gelu": ImagenetResNetGELUWorkload,
    "imagenet_resnet_large_bn_init": ImagenetResNetLargeBNScaleWorkload,
}
