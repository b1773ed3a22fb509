"""DelugeNet: deep networks with cross-layer information inflows.

Kuen, Kong, Wang, Tan: "DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information
Inflows", ICCV 2017 workshops, arXiv:1611.05552. Reference code (Lua Torch7, MIT licence):
https://github.com/xternalz/DelugeNets

A stage keeps a list of feature maps. Each composite layer reads the whole list through a cross-layer depthwise
convolution (a learned per-channel weighting of every map) and appends its own output. There is no residual sum.
A block transition combines the previous stage's whole list the same way and downsamples it with a strided
3x3 convolution, whose output h0 starts the next stage's list. The head combines the last stage's list.

Structure of this implementation:
* The block transition's cross-layer depthwise convolution reads the previous stage's list, so it ends that
  stage as ``stages.i.cldc``. Its BatchNorm and strided 3x3 convolution start the next stage as
  ``stages.i+1.transition``. The head's cross-layer depthwise convolution is ``stages[-1].cldc`` and its
  BatchNorm + ReLU is ``norm``. Each stage therefore maps one tensor to one tensor, and its output is that
  stage's feature map for ``features_only`` and ``forward_intermediates``.
* Each map of a stage has one set of normalisation statistics in the stage's ``CrossLayerNorm``, shared by
  every consumer, which is exact (see ``timm_deluge.layers.cross_layer``). In training each consumer folds
  the batch statistics into its cross-layer weights and reads the raw maps.
* In eval mode the normalisations fold into the cross-layer weights and every BatchNorm that follows a
  convolution folds into that convolution. Folded weights are computed on each forward from the current
  parameters, so nothing is modified and training resumes from the same parameters.
"""
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    BatchNormAct2d, ClassifierHead, DropPath, calculate_drop_path_rates, create_conv2d, get_act_layer,
    get_device_dtype,
)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from timm_deluge.layers import CrossLayerDepthwiseConv, CrossLayerNorm, fold_batchnorm, weighted_sum

from .pretrained import WEIGHT_LOAD_ERRORS, describe_weight_source, resolve_weight_source

__all__ = ['DelugeNet', 'DelugeStage', 'CompositeLayer', 'Transition']


class CompositeLayer(nn.Module):
    """Bottleneck composite layer reading N maps of its stage.

    ``[cross-layer depthwise conv if N >= 2] -> BN -> ReLU -> conv1x1 -> BN -> ReLU -> conv3x3 -> BN -> ReLU ->
    conv1x1``, with no residual addition and no convolution bias.
    """

    def __init__(
            self,
            in_chs: int,
            mid_chs: int,
            out_chs: int,
            num_inputs: int,
            act_layer: Callable = nn.ReLU,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        """
        Args:
            in_chs: Channels of every input map.
            mid_chs: Bottleneck width n.
            out_chs: Output channels, 2n in the paper's networks.
            num_inputs: Number of maps N this layer reads.
            act_layer: Activation layer.
            drop_path_rate: Probability of dropping this layer's output per sample (stochastic depth).
        """
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.num_inputs = num_inputs
        self.cldc = CrossLayerDepthwiseConv(in_chs, num_inputs, **dd) if num_inputs >= 2 else None
        self.norm1 = BatchNormAct2d(in_chs, act_layer=act_layer, **dd)
        self.conv1 = create_conv2d(in_chs, mid_chs, 1, **dd)
        self.norm2 = BatchNormAct2d(mid_chs, act_layer=act_layer, **dd)
        self.conv2 = create_conv2d(mid_chs, mid_chs, 3, **dd)
        self.norm3 = BatchNormAct2d(mid_chs, act_layer=act_layer, **dd)
        self.conv3 = create_conv2d(mid_chs, out_chs, 1, **dd)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(
            self,
            inputs: List[torch.Tensor],
            mean: Optional[torch.Tensor] = None,
            inv_std: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Compute the layer's output map in training mode.

        The inputs' shared normalisation is folded into the cross-layer weights (``CrossLayerDepthwiseConv.fold``),
        which gives the output and gradients of the normalised sum without materialising normalised copies.

        Args:
            inputs: The single raw map when N == 1, else the N raw maps, oldest first.
            mean: Batch mean of each input, shape (N, C). Required when N >= 2.
            inv_std: Batch 1 / sqrt(var + eps) of each input, shape (N, C). Required when N >= 2.
        """
        if self.cldc is None:
            x = self.norm1(inputs[0])
        else:
            if mean is None or inv_std is None:
                raise ValueError('A composite layer that reads several maps needs their mean and inv_std.')
            x = self.norm1(weighted_sum(inputs, *self.cldc.fold(mean, inv_std)))
        x = self.conv1(x)
        x = self.conv2(self.norm2(x))
        x = self.conv3(self.norm3(x))
        return self.drop_path(x)

    def forward_folded(self, inputs: List[torch.Tensor], mean: torch.Tensor, inv_std: torch.Tensor) -> torch.Tensor:
        """Eval-mode equivalent of ``forward`` on raw maps, with every normalisation folded.

        Args:
            inputs: The N raw maps, oldest first.
            mean: Running means of the N maps' shared normalisation, shape (N, C).
            inv_std: Their 1 / sqrt(running_var + eps), shape (N, C).
        """
        norm1_scale, norm1_shift = fold_batchnorm(
            self.norm1.running_mean, self.norm1.running_var, self.norm1.weight, self.norm1.bias, self.norm1.eps)
        if self.cldc is None:
            x = weighted_sum(inputs[:1], norm1_scale.unsqueeze(1), norm1_shift)
        else:
            scale, shift = self.cldc.fold(mean, inv_std, norm1_scale, norm1_shift)
            x = weighted_sum(inputs, scale, shift)
        x = self.norm1.act(x)

        # Each BatchNorm after a convolution folds into that convolution's weight and a bias.
        scale, shift = fold_batchnorm(
            self.norm2.running_mean, self.norm2.running_var, self.norm2.weight, self.norm2.bias, self.norm2.eps)
        x = F.conv2d(x, self.conv1.weight * scale.reshape(-1, 1, 1, 1), shift)
        x = self.norm2.act(x)
        scale, shift = fold_batchnorm(
            self.norm3.running_mean, self.norm3.running_var, self.norm3.weight, self.norm3.bias, self.norm3.eps)
        x = F.conv2d(x, self.conv2.weight * scale.reshape(-1, 1, 1, 1), shift, padding=1)
        x = self.norm3.act(x)
        return self.conv3(x)


class Transition(nn.Module):
    """BatchNorm and strided 3x3 convolution of a block transition, with no activation.

    The transition's cross-layer depthwise convolution over the previous stage's maps is that stage's ``cldc``.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2, device=None, dtype=None):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.norm = nn.BatchNorm2d(in_chs, **dd)
        self.conv = create_conv2d(in_chs, out_chs, 3, stride=stride, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class DelugeStage(nn.Module):
    """One DelugeNet stage: an optional first map h0, composite layers, and the closing cross-layer conv.

    The closing cross-layer depthwise convolution combines every map of the stage into the stage output, which
    the next stage's transition or the head consumes.
    """

    def __init__(
            self,
            in_chs: int,
            width: int,
            depth: int,
            first_map: str = 'transition',
            stride: int = 2,
            act_layer: Callable = nn.ReLU,
            drop_path_rates: Optional[List[float]] = None,
            device=None,
            dtype=None,
    ):
        """
        Args:
            in_chs: Channels of the stage input.
            width: Bottleneck width n. Every map of the stage has 2n channels.
            depth: Number of composite layers.
            first_map: How h0 is made: 'transition' (BatchNorm, strided 3x3 conv), 'projection' (a bare 1x1 conv,
                the first ImageNet stage), or 'none' (no h0: the input feeds the first composite layer only, the
                first CIFAR stage).
            stride: Stride of the transition.
            act_layer: Activation layer.
            drop_path_rates: Stochastic depth rate of each composite layer.
        """
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if first_map not in ('transition', 'projection', 'none'):
            raise ValueError(f"first_map={first_map!r} is invalid: use 'transition', 'projection' or 'none'.")
        out_chs = 2 * width
        num_maps = depth + (0 if first_map == 'none' else 1)
        if depth < 1 or num_maps < 2:
            raise ValueError(
                f'depth={depth} is too small for a stage with first_map={first_map!r}: the stage needs at '
                f'least 2 maps for its closing cross-layer depthwise convolution.')
        self.grad_checkpointing = False
        self.out_chs = out_chs

        if first_map == 'transition':
            self.transition = Transition(in_chs, out_chs, stride=stride, **dd)
        elif first_map == 'projection':
            self.transition = create_conv2d(in_chs, out_chs, 1, **dd)
        else:
            self.transition = None

        drop_path_rates = drop_path_rates or [0.] * depth
        layers = []
        num_inputs = 0 if first_map == 'none' else 1
        for i in range(depth):
            layer_in_chs = in_chs if num_inputs == 0 else out_chs
            layers.append(CompositeLayer(
                layer_in_chs,
                width,
                out_chs,
                num_inputs=max(num_inputs, 1),
                act_layer=act_layer,
                drop_path_rate=drop_path_rates[i],
                **dd,
            ))
            num_inputs += 1
        self.layers = nn.ModuleList(layers)
        self.norm = CrossLayerNorm(out_chs, num_maps, **dd)
        self.cldc = CrossLayerDepthwiseConv(out_chs, num_maps, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._forward_folded(x)

        # Each map's batch statistics are computed once and folded into every consumer's weights, so consumers
        # read the raw maps and autograd stores one copy of each map, not a raw and a normalised one.
        maps: List[torch.Tensor] = []
        means: List[torch.Tensor] = []
        inv_stds: List[torch.Tensor] = []
        if self.transition is not None:
            x = self.transition(x)
            maps.append(x)
            mean, inv_std = self.norm.batch_stats(x, 0)
            means.append(mean)
            inv_stds.append(inv_std)
        for layer in self.layers:
            # A layer with one input reads it raw: the stage input, or h0 / h1 as the first map. The list is
            # copied because checkpointing recomputes the layer later, when `maps` has grown.
            inputs_mean: Optional[torch.Tensor] = None
            inputs_inv_std: Optional[torch.Tensor] = None
            if len(maps) >= 2:
                inputs = maps[:]
                inputs_mean, inputs_inv_std = torch.stack(means), torch.stack(inv_stds)
            else:
                inputs = [maps[0]] if maps else [x]
            if self.grad_checkpointing and not torch.jit.is_scripting():
                h = checkpoint(layer, inputs, inputs_mean, inputs_inv_std)
            else:
                h = layer(inputs, inputs_mean, inputs_inv_std)
            mean, inv_std = self.norm.batch_stats(h, len(maps))
            means.append(mean)
            inv_stds.append(inv_std)
            maps.append(h)
        return weighted_sum(maps, *self.cldc.fold(torch.stack(means), torch.stack(inv_stds)))

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        maps: List[torch.Tensor] = []
        if self.transition is not None:
            maps.append(self.transition(x))
        for layer in self.layers:
            if len(maps) >= 2:
                inputs = maps
            else:
                # A layer with one input reads the stage input, or h0 / h1 as the first map.
                inputs = [maps[0]] if maps else [x]
            mean, inv_std = self.norm.stats(len(inputs))
            maps.append(layer.forward_folded(inputs, mean, inv_std))
        mean, inv_std = self.norm.stats(len(maps))
        scale, shift = self.cldc.fold(mean, inv_std)
        return weighted_sum(maps, scale, shift)


def _check_input(x: torch.Tensor, in_chans: int) -> None:
    # Symbolic tracing passes proxies that have no shape values. The traced graph checks shapes when it runs.
    if is_fx_symbolic_tracing():
        return
    if x.ndim != 4:
        raise ValueError(
            f'DelugeNet expects a 4-D input (batch, channels, height, width), got a {x.ndim}-D tensor of shape '
            f'{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) for a single image.')
    if x.shape[1] != in_chans:
        if x.shape[3] == in_chans:
            hint = 'The input looks like (batch, height, width, channels): convert it with x.permute(0, 3, 1, 2).'
        else:
            hint = f'Create the model with in_chans={x.shape[1]} or convert the images.'
        raise ValueError(
            f'DelugeNet was built for in_chans={in_chans} but the input has {x.shape[1]} channels (shape '
            f'{tuple(x.shape)}). {hint}')


class DelugeNet(nn.Module):
    """DelugeNet for ImageNet-style (stride 32) or CIFAR-style (stride 4) inputs."""

    def __init__(
            self,
            depths: Tuple[int, ...] = (7, 9, 11, 13),
            widths: Tuple[int, ...] = (64, 128, 256, 512),
            stem_type: str = 'imagenet',
            stem_chs: int = 64,
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            act_layer: Union[str, Callable] = 'relu',
            device=None,
            dtype=None,
    ):
        """
        Args:
            depths: Composite layers per stage.
            widths: Bottleneck width n per stage. Every map of a stage has 2n channels.
            stem_type: 'imagenet' (7x7 stride-2 conv, BN, ReLU, max pool, and a 1x1 conv as the first map) or
                'cifar' (one 3x3 conv, whose output feeds only the first composite layer).
            stem_chs: Stem output channels.
            num_classes: Classifier outputs, 0 for no classifier.
            in_chans: Input image channels.
            global_pool: Global pooling type of the head, '' for none.
            drop_rate: Dropout before the classifier.
            drop_path_rate: Stochastic depth rate, rising linearly over all composite layers to this value.
            act_layer: Activation layer.
        """
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if stem_type not in ('imagenet', 'cifar'):
            raise ValueError(f"stem_type={stem_type!r} is invalid: use 'imagenet' or 'cifar'.")
        if len(depths) != len(widths):
            raise ValueError(f'depths={depths} and widths={widths} must have one entry per stage.')
        if in_chans < 1:
            raise ValueError(f'in_chans={in_chans} is invalid: images need at least 1 channel.')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        act_layer = get_act_layer(act_layer)

        if stem_type == 'imagenet':
            self.stem = nn.Sequential(OrderedDict([
                ('conv', create_conv2d(in_chans, stem_chs, 7, stride=2, **dd)),
                ('norm', BatchNormAct2d(stem_chs, act_layer=act_layer, **dd)),
                ('pool', nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]))
            self.stem_feat_idx = 1
            self.feature_info = [dict(num_chs=stem_chs, reduction=2, module='stem.norm')]
            stride = 4
            first_map = 'projection'
        else:
            self.stem = nn.Sequential(OrderedDict([
                ('conv', create_conv2d(in_chans, stem_chs, 3, **dd)),
            ]))
            self.stem_feat_idx = 0
            self.feature_info = [dict(num_chs=stem_chs, reduction=1, module='stem.conv')]
            stride = 1
            first_map = 'none'

        # Stochastic depth rises linearly over all composite layers of the network.
        flat_dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))
        dpr = [flat_dpr[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]
        stages = []
        prev_chs = stem_chs
        for i, (depth, width) in enumerate(zip(depths, widths)):
            stage_stride = 1 if i == 0 else 2
            stride *= stage_stride
            stage, prev_chs = self._make_stage(
                prev_chs,
                width,
                depth,
                first_map=first_map if i == 0 else 'transition',
                stride=stage_stride,
                act_layer=act_layer,
                drop_path_rates=dpr[i],
                **dd,
            )
            stages.append(stage)
            self.feature_info.append(dict(num_chs=prev_chs, reduction=stride, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = prev_chs
        self.norm = BatchNormAct2d(prev_chs, act_layer=act_layer, **dd)
        self.head = ClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        self.init_weights()

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
        """Build one stage and return it with its output channels."""
        stage = DelugeStage(
            in_chs,
            width,
            depth,
            first_map=first_map,
            stride=stride,
            act_layer=act_layer,
            drop_path_rates=drop_path_rates,
            device=device,
            dtype=dtype,
        )
        return stage, stage.out_chs

    def init_weights(self) -> None:
        """Initialise as the original: Kaiming-normal (fan_out) convolutions, zero classifier bias."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.Linear):
                # PyTorch's default weight initialisation stays, as in the original.
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Group parameters by stage (coarse) or by composite layer, for layer-wise learning rates."""
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.transition', (0,)),
                (r'^stages\.(\d+)\.layers\.(\d+)', None),
                (r'^stages\.(\d+)\.cldc', (99999,)),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Enable or disable gradient checkpointing of composite layers in every stage."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier.

        Args:
            num_classes: New number of classes, 0 to remove the classifier.
            global_pool: New global pooling type; None keeps the current one.
        """
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, in_features=self.num_features, **get_device_dtype(self))
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Run the network and return the feature maps at the requested ``feature_info`` indices.

        Index 0 is the stem feature, index i > 0 the output of stage i - 1.

        Args:
            x: Input images.
            indices: Take the last n features if an int, all if None, or the listed indices.
            norm: Apply the final BatchNorm + ReLU to the last stage's feature.
            stop_early: Stop after the last requested feature.
            output_fmt: Output layout, only 'NCHW'.
            intermediates_only: Return only the features.

        Returns:
            The features, or the final feature map and the features.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r} is not supported: DelugeNet returns 'NCHW' features.")
        if not torch.jit.is_scripting():
            _check_input(x, self.in_chans)
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates: List[torch.Tensor] = []

        for i, module in enumerate(self.stem):
            x = module(x)
            if i == self.stem_feat_idx and 0 in take_indices:
                intermediates.append(x)

        num_stages = len(self.stages)
        if torch.jit.is_scripting() or not stop_early:
            stages = self.stages
        else:
            stages = self.stages[:max_index]
        for feat_idx, stage in enumerate(stages, start=1):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm(x) if norm and feat_idx == num_stages else x)

        if intermediates_only:
            return intermediates
        if len(stages) == num_stages:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Remove the stages, final norm and head that the requested features do not need."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if max_index == 0:
            # The stem feature is taken before the stem's pooling.
            self.stem = self.stem[:self.stem_feat_idx + 1]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the final feature map, after the head's cross-layer conv, BatchNorm and ReLU."""
        if not torch.jit.is_scripting():
            _check_input(x, self.in_chans)
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, drop and classify the final feature map, or return the pooled features if ``pre_logits``."""
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x)


def _create_delugenet(
        variant: str,
        pretrained: bool = False,
        model_cls: Callable[..., DelugeNet] = DelugeNet,
        **kwargs: Any,
) -> DelugeNet:
    depths = kwargs.get('depths', (7, 9, 11, 13))
    pretrained_cfg = resolve_weight_source(variant, kwargs) if pretrained else None
    try:
        return build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            feature_cfg=dict(feature_cls='getter', out_indices=tuple(range(len(depths) + 1))),
            **kwargs,
        )
    except WEIGHT_LOAD_ERRORS as e:
        if pretrained_cfg is None:
            raise
        raise RuntimeError(
            f'Loading pretrained weights for {variant} from {describe_weight_source(pretrained_cfg)} failed: {e}'
        ) from e


# Per-channel statistics used by the original training code (fb.resnet.torch), on the 0-1 pixel scale.
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)

_PAPER = dict(
    paper_ids='arXiv:1611.05552',
    paper_name='DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information Inflows',
    origin_url='https://github.com/xternalz/DelugeNets',
    license='mit',
)


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        'url': '',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc',
        **_PAPER,
        **kwargs,
    }


def _cifar_cfg(dataset: str, **kwargs: Any) -> Dict[str, Any]:
    if dataset == 'cifar10':
        stats = dict(num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    else:
        stats = dict(num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    return _cfg(input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, **stats, **kwargs)


# No configuration names weights: none were published for these architectures.
default_cfgs = generate_default_cfgs({
    'delugenet_92': _cfg(),
    'delugenet_104': _cfg(),
    'delugenet_122': _cfg(),
    'delugenet_146_cifar.cifar100': _cifar_cfg('cifar100'),
    'delugenet_146_cifar.cifar10': _cifar_cfg('cifar10'),
    'delugenet_218_cifar.cifar100': _cifar_cfg('cifar100'),
    'delugenet_218_cifar.cifar10': _cifar_cfg('cifar10'),
    'delugenet_146_wide_cifar.cifar100': _cifar_cfg('cifar100'),
    'delugenet_146_wide_cifar.cifar10': _cifar_cfg('cifar10'),
    'delugenet_56_cifar.cifar100': _cifar_cfg('cifar100'),
    'delugenet_56_cifar.cifar10': _cifar_cfg('cifar10'),
})


def _cifar_args(layers_first_stage: int, width_mult: float) -> Dict[str, Any]:
    # The paper's CIFAR rule: stages 2 and 3 have 2x and 3x the first stage's layers, widths double per stage.
    n = layers_first_stage
    return dict(
        depths=(n, 2 * n, 3 * n),
        widths=tuple(int(w * width_mult) for w in (32, 64, 128)),
        stem_type='cifar',
        stem_chs=int(32 * width_mult),
    )


@register_model
def delugenet_92(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-92 for ImageNet: 7, 7, 8, 8 composite layers."""
    return _create_delugenet('delugenet_92', pretrained, **dict(depths=(7, 7, 8, 8), **kwargs))


@register_model
def delugenet_104(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-104 for ImageNet: 7, 8, 9, 10 composite layers."""
    return _create_delugenet('delugenet_104', pretrained, **dict(depths=(7, 8, 9, 10), **kwargs))


@register_model
def delugenet_122(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-122 for ImageNet: 7, 9, 11, 13 composite layers."""
    return _create_delugenet('delugenet_122', pretrained, **dict(depths=(7, 9, 11, 13), **kwargs))


@register_model
def delugenet_146_cifar(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-146 for CIFAR: 8, 16, 24 composite layers, widths 32, 64, 128."""
    return _create_delugenet('delugenet_146_cifar', pretrained, **dict(_cifar_args(8, 1), **kwargs))


@register_model
def delugenet_218_cifar(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-218 for CIFAR: 12, 24, 36 composite layers, widths 32, 64, 128."""
    return _create_delugenet('delugenet_218_cifar', pretrained, **dict(_cifar_args(12, 1), **kwargs))


@register_model
def delugenet_146_wide_cifar(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """Wide-DelugeNet-146 for CIFAR: 8, 16, 24 composite layers, widths 56, 112, 224."""
    return _create_delugenet('delugenet_146_wide_cifar', pretrained, **dict(_cifar_args(8, 1.75), **kwargs))


@register_model
def delugenet_56_cifar(pretrained: bool = False, **kwargs: Any) -> DelugeNet:
    """DelugeNet-56 for CIFAR, a small variant by the paper's rule: 3, 6, 9 composite layers, widths 16, 32, 64."""
    return _create_delugenet('delugenet_56_cifar', pretrained, **dict(_cifar_args(3, 0.5), **kwargs))
