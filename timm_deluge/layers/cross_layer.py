"""Cross-layer depthwise convolution, the connection layer of DelugeNets.

Kuen, Kong, Wang, Tan: "DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information
Inflows", arXiv:1611.05552.

A consumer that reads N feature maps h_1..h_N of C channels each computes, for every channel c,

    y[c] = sum_i ( weight[c, i] * BN_i(h_i)[c] + bias[c, i] )

where BN_i is a batch normalisation without affine parameters. In the authors' Lua code every consumer
normalises every input itself. The statistics of BN_i depend only on h_i, and every consumer updates its copy
once per step with the same momentum, so all copies are identical. Here each map has one set of statistics in
`CrossLayerNorm`, owned by the stage and shared by every consumer. That is exact in training and in eval and
saves O(L^2) normalisation passes and stored activations per stage of L layers. In training the stage computes
each map's batch mean and 1/std once (`CrossLayerNorm.batch_stats`) and every consumer folds them into its
weights, so consumers read the raw maps and no normalised copy is materialised or stored for backward.

In eval mode the normalisation is an affine map, so it folds into the consumers' weights, and an affine
BatchNorm that follows the sum folds into them too (`CrossLayerDepthwiseConv.fold`).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

__all__ = ['CrossLayerNorm', 'CrossLayerDepthwiseConv', 'weighted_sum', 'fold_batchnorm']


def _weighted_sum_ops(inputs: List[torch.Tensor], scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # The first product allocates the output, so the in-place accumulation never touches an input. Autograd
    # accepts the in-place ops because multiplication saves its operands, not its result. Each result is
    # reassigned so that torch.fx dead-code elimination keeps it.
    channels = scale.shape[0]
    out = inputs[0] * scale[:, 0].reshape(1, channels, 1, 1)
    for i in range(1, len(inputs)):
        out = out.addcmul_(inputs[i], scale[:, i].reshape(1, channels, 1, 1))
    return out.add_(shift.reshape(1, channels, 1, 1))


class _WeightedSum(torch.autograd.Function):
    """Autograd function of ``weighted_sum`` with a backward pass written for it.

    The backward pass computes each input's gradient with one multiplication, and the gradient of each scale
    column as a per-channel reduction of ``grad * input`` through one scratch tensor that is reused for every
    input. Left to autograd, ``addcmul_`` makes four full-size temporaries per input instead of one, because
    its backward formulas multiply by the scalar ``value`` too.
    Only references to the inputs are saved, as autograd does for ``addcmul_``.
    """

    @staticmethod
    def forward(ctx, scale: torch.Tensor, shift: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale, *inputs)
        return _weighted_sum_ops(list(inputs), scale, shift)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scale, *inputs = ctx.saved_tensors
        channels = scale.shape[0]
        needs_scale, needs_shift = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        reduce_dims = (0, 2, 3)

        grad_shift = grad.sum(reduce_dims) if needs_shift else None
        grad_scale = None
        if needs_scale:
            scale_columns = []
            product = torch.empty_like(grad)
            for x in inputs:
                torch.mul(grad, x, out=product)
                scale_columns.append(product.sum(reduce_dims))
            grad_scale = torch.stack(scale_columns, dim=1)

        grad_inputs = []
        for i in range(len(inputs)):
            if ctx.needs_input_grad[2 + i]:
                grad_inputs.append(grad * scale[:, i].reshape(1, channels, 1, 1))
            else:
                grad_inputs.append(None)
        return (grad_scale, grad_shift, *grad_inputs)


def weighted_sum(inputs: List[torch.Tensor], scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Compute ``sum_i inputs[i] * scale[:, i] + shift`` per channel.

    Args:
        inputs: N tensors of shape (B, C, H, W) of one dtype, in any memory format.
        scale: Per-channel, per-input scales of shape (C, N).
        shift: Per-channel shift of shape (C,).

    Returns:
        Tensor of shape (B, C, H, W).
    """
    dtype = inputs[0].dtype
    scale = scale.to(dtype)
    shift = shift.to(dtype)
    # TorchScript cannot compile autograd functions, and torch.fx traces the plain ops, so both take the
    # plain path. So does inference, where there is no backward pass to save work in.
    if not torch.jit.is_scripting():
        if torch.is_grad_enabled() and not is_fx_symbolic_tracing():
            return _WeightedSum.apply(scale, shift, *inputs)
    return _weighted_sum_ops(inputs, scale, shift)


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


class _BatchStats(torch.autograd.Function):
    """Per-channel batch mean, biased variance and 1/std of a (B, C, H, W) tensor, with a one-pass backward.

    The statistics come from the sums of ``x`` and ``x * x``. On one AMD EPYC core with torch 2.14.1 that took
    5.5 ms for a (16, 128, 56, 56) float32 tensor, against 28 ms for the Welford reduction of
    ``torch.var_mean``. The variance is the difference of two means, so its absolute error
    is about float32 epsilon times ``mean ** 2 + var``. The gradient with respect to ``x`` is
    ``x * alpha + beta`` per channel, one pass over ``x``. The variance output is not differentiable.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xf = x.float() if x.dtype == torch.float16 or x.dtype == torch.bfloat16 else x
        dims = (0, 2, 3)
        mean = xf.mean(dims)
        var = ((xf * xf).mean(dims) - mean * mean).clamp_(min=0.)
        inv_std = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, mean, inv_std)
        ctx.mark_non_differentiable(var)
        return mean, var, inv_std

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor, grad_inv_std: torch.Tensor):
        x, mean, inv_std = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        # d(inv_std)/dx = -inv_std ** 3 * (x - mean) / count, and d(mean)/dx = 1 / count.
        alpha = -grad_inv_std * inv_std.pow(3) / count
        beta = grad_mean / count - alpha * mean
        shape = (1, x.shape[1], 1, 1)
        grad_x = torch.addcmul(beta.to(x.dtype).reshape(shape), x, alpha.to(x.dtype).reshape(shape))
        return grad_x, None


def _update_running_stats(
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        mean: torch.Tensor,
        var: torch.Tensor,
        count: int,
        momentum: float,
) -> None:
    with torch.no_grad():
        # The running variance is unbiased, as in F.batch_norm.
        unbiased_var = var * (count / (count - 1))
        running_mean.mul_(1. - momentum).add_(mean.to(running_mean.dtype) * momentum)
        running_var.mul_(1. - momentum).add_(unbiased_var.to(running_var.dtype) * momentum)


def _batch_stats_with_update(
        x: torch.Tensor,
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        momentum: float,
        eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return the batch mean and 1/std of ``x`` and update the running statistics in place."""
    count = x.numel() // x.shape[1]
    if count < 2:
        raise ValueError(
            f'Expected more than 1 value per channel when training, got input of shape {tuple(x.shape)}. Use a '
            f'batch of at least 2 images, or eval mode.')
    mean, var, inv_std = _BatchStats.apply(x, eps)
    _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    return mean, inv_std


# torch.fx records this function as one call, which runs eagerly. Traced line by line, its shape check would
# need values that proxies lack, and dead-code elimination would drop the in-place running-statistics update
# because nothing reads its result.
torch.fx.wrap('_batch_stats_with_update')


class CrossLayerNorm(nn.Module):
    """Statistics of the shared batch normalisation, without affine parameters, of the maps of one stage.

    Map ``i`` of the stage has its running statistics in row ``i`` of ``running_mean`` and ``running_var``. The
    module returns statistics, not normalised maps: each consumer folds them into its cross-layer weights.
    ``batch_stats`` gives batch statistics in training, updating row ``i``, and ``stats`` the running ones.
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

    def batch_stats(self, x: torch.Tensor, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return the mean and 1/std, each of shape (C,), that normalise ``x`` as map ``index`` of the stage.

        In training these are the batch statistics, differentiable with respect to ``x``, and row ``index`` of
        the running statistics is updated as ``forward`` updates it. In eval they are the running statistics.
        A consumer folds them into its weights (``CrossLayerDepthwiseConv.fold``), so the normalised map is
        never materialised or stored for backward.
        """
        if not self.training:
            return self.running_mean[index], torch.rsqrt(self.running_var[index] + self.eps)
        if torch.jit.is_scripting():
            # TorchScript cannot compile autograd functions, so it computes the statistics with plain ops.
            # Low-precision maps (bf16 autocast) get float32 statistics, as F.batch_norm computes them.
            count = x.numel() // x.shape[1]
            xf = x.float() if x.dtype == torch.float16 or x.dtype == torch.bfloat16 else x
            var, mean = torch.var_mean(xf, dim=[0, 2, 3], unbiased=False)
            _update_running_stats(self.running_mean[index], self.running_var[index], mean, var, count, self.momentum)
            return mean, torch.rsqrt(var + self.eps)
        return _batch_stats_with_update(x, self.running_mean[index], self.running_var[index], self.momentum, self.eps)

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
