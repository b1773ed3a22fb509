"""Cross-layer depthwise convolution, the connection layer of DelugeNets.

Kuen, Kong, Wang, Tan: "DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information
Inflows", arXiv:1611.05552.

A consumer that reads N feature maps h_1..h_N of C channels each computes, for every channel c,

    y[c] = sum_i ( weight[c, i] * BN_i(h_i)[c] + bias[c, i] )

where BN_i is a batch normalisation without affine parameters. In the authors' Lua code every consumer
normalises every input itself. The statistics of BN_i depend only on h_i, and every consumer updates its copy
once per step with the same momentum, so all copies are identical. Here each map is normalised once by
`CrossLayerNorm`, owned by the stage, and the normalised map is shared by every consumer. That is exact in
training and in eval and saves O(L^2) normalisation passes and stored activations per stage of L layers.

In eval mode the normalisation is an affine map, so it folds into the consumers' weights, and an affine
BatchNorm that follows the sum folds into them too (`CrossLayerDepthwiseConv.fold`).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['CrossLayerNorm', 'CrossLayerDepthwiseConv', 'weighted_sum', 'fold_batchnorm']


def weighted_sum(inputs: List[torch.Tensor], scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Compute ``sum_i inputs[i] * scale[:, i] + shift`` per channel.

    Args:
        inputs: N tensors of shape (B, C, H, W), in any memory format.
        scale: Per-channel, per-input scales of shape (C, N).
        shift: Per-channel shift of shape (C,).

    Returns:
        Tensor of shape (B, C, H, W).
    """
    channels = scale.shape[0]
    # The first product allocates the output, so the in-place accumulation never touches an input. Autograd
    # accepts the in-place ops because multiplication saves its operands, not its result. Each result is
    # reassigned so that torch.fx dead-code elimination keeps it.
    scale = scale.to(inputs[0].dtype)
    out = inputs[0] * scale[:, 0].reshape(1, channels, 1, 1)
    for i in range(1, len(inputs)):
        out = out.addcmul_(inputs[i], scale[:, i].reshape(1, channels, 1, 1))
    return out.add_(shift.to(out.dtype).reshape(1, channels, 1, 1))


def fold_batchnorm(
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        weight: Optional[torch.Tensor],
        bias: Optional[torch.Tensor],
        eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return the eval-mode scale and shift of a BatchNorm, so that norm(x) == x * scale + shift per channel."""
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


class CrossLayerNorm(nn.Module):
    """Shared batch normalisation, without affine parameters, of the feature maps of one stage.

    Map ``i`` of the stage has its own running statistics in row ``i`` of ``running_mean`` and ``running_var``.
    Training normalises with batch statistics and updates row ``i``; eval uses the running statistics.
    """

    def __init__(
            self,
            num_features: int,
            num_maps: int,
            eps: float = 1e-5,
            momentum: float = 0.1,
            device=None,
            dtype=None,
    ):
        """
        Args:
            num_features: Channels C of every map.
            num_maps: Number of maps in the stage that some cross-layer depthwise convolution reads.
            eps: Added to the variance for numerical stability.
            momentum: Weight of the newest batch in the running statistics.
        """
        super().__init__()
        self.num_features = num_features
        self.num_maps = num_maps
        self.eps = eps
        self.momentum = momentum
        self.register_buffer('running_mean', torch.zeros(num_maps, num_features, device=device, dtype=dtype))
        self.register_buffer('running_var', torch.ones(num_maps, num_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Normalise map ``index`` of the stage."""
        # Row views of the buffers: batch_norm updates them in place, which updates the buffers.
        return F.batch_norm(
            x,
            self.running_mean[index],
            self.running_var[index],
            None,
            None,
            self.training,
            self.momentum,
            self.eps,
        )

    def stats(self, num_inputs: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return the running mean and 1/std of the first ``num_inputs`` maps, each of shape (num_inputs, C)."""
        mean = self.running_mean[:num_inputs]
        inv_std = torch.rsqrt(self.running_var[:num_inputs] + self.eps)
        return mean, inv_std

    def extra_repr(self) -> str:
        return f'{self.num_features}, num_maps={self.num_maps}, eps={self.eps}, momentum={self.momentum}'


class CrossLayerDepthwiseConv(nn.Module):
    """Cross-layer depthwise convolution: a learned per-channel weighting of N feature maps.

    ``weight`` and ``bias`` have shape (C, N); column ``i`` belongs to input ``i``, inputs ordered from the
    oldest map of the stage to the newest. Only the sum of ``bias`` over N reaches the output, but the original
    keeps C * N biases (they receive weight decay and count as parameters), and so does this module.
    """

    def __init__(self, channels: int, num_inputs: int, device=None, dtype=None):
        """
        Args:
            channels: Channels C of every input and of the output.
            num_inputs: Number of input maps N, at least 2.
        """
        super().__init__()
        if num_inputs < 2:
            raise ValueError(
                f'num_inputs={num_inputs} is invalid: a cross-layer depthwise convolution combines at least 2 '
                f'maps, and a consumer of a single map reads it directly.')
        self.channels = channels
        self.num_inputs = num_inputs
        self.weight = nn.Parameter(torch.empty(channels, num_inputs, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(channels, num_inputs, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Give every input the same weight 1/N and zero the biases, as the original does."""
        nn.init.constant_(self.weight, 1. / self.num_inputs)
        nn.init.zeros_(self.bias)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        """Combine N already normalised maps.

        Args:
            inputs: The N normalised maps, oldest first.

        Returns:
            The weighted sum, shape (B, C, H, W).
        """
        return weighted_sum(inputs, self.weight, self.bias.sum(1))

    def fold(
            self,
            mean: torch.Tensor,
            inv_std: torch.Tensor,
            post_scale: Optional[torch.Tensor] = None,
            post_shift: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Fold eval-mode input normalisation, and optionally a following affine map, into scales and a shift.

        With ``scale, shift = fold(mean, inv_std)``, ``weighted_sum(raw_inputs, scale, shift)`` equals
        ``self(normalised_inputs)`` in eval mode. ``post_scale`` and ``post_shift`` (shape (C,)) fold an affine
        map applied to the output, such as an eval-mode BatchNorm (see ``fold_batchnorm``).

        Args:
            mean: Running means of the N inputs, shape (N, C).
            inv_std: 1 / sqrt(running_var + eps) of the N inputs, shape (N, C).
            post_scale: Per-channel scale applied to the output.
            post_shift: Per-channel shift applied after ``post_scale``.

        Returns:
            Scales of shape (C, N) and a shift of shape (C,).
        """
        scale = self.weight * inv_std.t()
        shift = self.bias.sum(1) - (scale * mean.t()).sum(1)
        if post_scale is not None:
            scale = scale * post_scale.unsqueeze(1)
            shift = shift * post_scale
        if post_shift is not None:
            shift = shift + post_shift
        return scale, shift

    def extra_repr(self) -> str:
        return f'{self.channels}, num_inputs={self.num_inputs}'
