"""ResNet-like baselines of the DelugeNet paper's CIFAR ablation.

Each baseline has the stem, widths and layer counts of a CIFAR DelugeNet. In place of cross-layer depthwise
convolutions and block transitions it has pre-activation residual stages with identity shortcuts. The first
block of each stage has a projection shortcut without BatchNorm (stride 2 in stages 2 and 3). The projection is a
1x1 convolution, or a 3x3 convolution in the second baseline. The blocks are timm's ``PreActBottleneck`` with
bottleneck ratio 0.5, so every block outputs 2n channels like a composite layer.
"""
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn as nn

from timm.layers import BatchNormAct2d, create_conv2d
from timm.models import generate_default_cfgs, register_model
from timm.models.resnetv2 import PreActBottleneck, ResNetStage

from .delugenet import DelugeNet, _cifar_args, _cifar_cfg, _create_delugenet

__all__ = ['ResNetLike']


class ProjectionShortcut3x3(nn.Module):
    """3x3 convolution shortcut, without BatchNorm, applied to the pre-activated block input."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            conv_layer: Callable = create_conv2d,
            device=None,
            dtype=None,
            **kwargs: Any,
    ):
        """
        Args:
            in_chs: Input channels.
            out_chs: Output channels.
            stride: Convolution stride.
            conv_layer: Convolution factory.
            **kwargs: Dilation and norm arguments that timm's stage passes to every shortcut; unused here.
        """
        super().__init__()
        self.conv = conv_layer(in_chs, out_chs, 3, stride=stride, device=device, dtype=dtype)

    def forward(self, x):
        return self.conv(x)


def _bottleneck_3x3_shortcut(*args: Any, proj_layer: Optional[Callable] = None, **kwargs: Any) -> PreActBottleneck:
    """Build a ``PreActBottleneck`` whose projection shortcut, where it has one, is a 3x3 convolution."""
    return PreActBottleneck(*args, proj_layer=ProjectionShortcut3x3 if proj_layer is not None else None, **kwargs)


class ResNetLike(DelugeNet):
    """Pre-activation ResNet with the stem, widths and depths of a CIFAR DelugeNet."""

    def __init__(self, *args: Any, shortcut_kernel: int = 1, **kwargs: Any):
        """
        Args:
            shortcut_kernel: Kernel size of the projection shortcuts, 1 or 3.
            *args, **kwargs: As for ``DelugeNet``.
        """
        if shortcut_kernel not in (1, 3):
            raise ValueError(f'shortcut_kernel={shortcut_kernel} is invalid: use 1 or 3.')
        self.shortcut_kernel = shortcut_kernel
        super().__init__(*args, **kwargs)

    def _make_stage(
            self,
            in_chs: int,
            width: int,
            depth: int,
            first_map: str,
            stride: int,
            act_layer: Callable,
            drop_path_rates: List[float],
            device=None,
            dtype=None,
    ) -> Tuple[nn.Module, int]:
        out_chs = 2 * width
        block_fn = PreActBottleneck if self.shortcut_kernel == 1 else _bottleneck_3x3_shortcut
        stage = ResNetStage(
            in_chs,
            out_chs,
            stride=stride,
            dilation=1,
            depth=depth,
            bottle_ratio=0.5,
            block_dpr=drop_path_rates,
            block_fn=block_fn,
            act_layer=act_layer,
            conv_layer=create_conv2d,
            norm_layer=partial(BatchNormAct2d, act_layer=act_layer),
            device=device,
            dtype=dtype,
        )
        return stage, out_chs

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Group parameters by stage (coarse) or by residual block."""
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
            ],
        )


def _create_resnetlike(variant: str, pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    return _create_delugenet(variant, pretrained, model_cls=ResNetLike, **kwargs)


default_cfgs = generate_default_cfgs({
    f'delugenet_baseline_{arch}_{kernel}_cifar.{dataset}': _cifar_cfg(dataset)
    for arch in ('146', '218', '146_wide', '56')
    for kernel in ('1x1', '3x3')
    for dataset in ('cifar100', 'cifar10')
})


@register_model
def delugenet_baseline_146_1x1_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of DelugeNet-146, 1x1 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_146_1x1_cifar', pretrained, **dict(_cifar_args(8, 1), shortcut_kernel=1, **kwargs))


@register_model
def delugenet_baseline_146_3x3_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of DelugeNet-146, 3x3 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_146_3x3_cifar', pretrained, **dict(_cifar_args(8, 1), shortcut_kernel=3, **kwargs))


@register_model
def delugenet_baseline_218_1x1_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of DelugeNet-218, 1x1 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_218_1x1_cifar', pretrained, **dict(_cifar_args(12, 1), shortcut_kernel=1, **kwargs))


@register_model
def delugenet_baseline_218_3x3_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of DelugeNet-218, 3x3 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_218_3x3_cifar', pretrained, **dict(_cifar_args(12, 1), shortcut_kernel=3, **kwargs))


@register_model
def delugenet_baseline_146_wide_1x1_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of Wide-DelugeNet-146, 1x1 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_146_wide_1x1_cifar', pretrained,
        **dict(_cifar_args(8, 1.75), shortcut_kernel=1, **kwargs))


@register_model
def delugenet_baseline_146_wide_3x3_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of Wide-DelugeNet-146, 3x3 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_146_wide_3x3_cifar', pretrained,
        **dict(_cifar_args(8, 1.75), shortcut_kernel=3, **kwargs))


@register_model
def delugenet_baseline_56_1x1_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of the small DelugeNet-56, 1x1 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_56_1x1_cifar', pretrained, **dict(_cifar_args(3, 0.5), shortcut_kernel=1, **kwargs))


@register_model
def delugenet_baseline_56_3x3_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetLike:
    """ResNet-like baseline of the small DelugeNet-56, 3x3 projection shortcuts."""
    return _create_resnetlike(
        'delugenet_baseline_56_3x3_cifar', pretrained, **dict(_cifar_args(3, 0.5), shortcut_kernel=3, **kwargs))
