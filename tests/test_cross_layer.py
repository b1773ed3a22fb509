"""Shared normalisation and eval-time folding against the original per-consumer cross-layer convolution.

The reference below is written from the architecture's definition, independently of the stage code. Every
consumer of N maps owns a BatchNorm2d(N * C) without affine and applies it to the channel concatenation of the
raw maps. It then sums the N weighted groups of C channels. This is the form of the authors' Lua code.
"""
import copy
from typing import List

import pytest
import timm
import torch
import torch.nn as nn

import timm_deluge  # noqa: F401  registers the family
from timm_deluge.layers import CrossLayerDepthwiseConv, weighted_sum
from timm_deluge.models.delugenet import DelugeStage


def _per_consumer_cldc(
        maps: List[torch.Tensor],
        weight: torch.Tensor,
        bias: torch.Tensor,
        norm: nn.BatchNorm2d,
) -> torch.Tensor:
    num_inputs, channels = len(maps), maps[0].shape[1]
    x = norm(torch.cat(maps, dim=1))
    x = x.reshape(x.shape[0], num_inputs, channels, x.shape[2], x.shape[3])
    x = x * weight.t().reshape(1, num_inputs, channels, 1, 1)
    return x.sum(1) + bias.sum(1).reshape(1, channels, 1, 1)


class PerConsumerStage(nn.Module):
    """The original stage: each cross-layer consumer normalises its inputs with its own statistics."""

    def __init__(self, stage: DelugeStage):
        super().__init__()
        self.stage = copy.deepcopy(stage)
        channels = self.stage.out_chs
        dd = dict(dtype=self.stage.cldc.weight.dtype)
        self.consumer_norms = nn.ModuleList([
            nn.BatchNorm2d(layer.cldc.num_inputs * channels, affine=False, **dd) if layer.cldc is not None
            else nn.Identity()
            for layer in self.stage.layers
        ])
        self.head_norm = nn.BatchNorm2d(self.stage.cldc.num_inputs * channels, affine=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stage = self.stage
        maps = []
        if stage.transition is not None:
            maps.append(stage.transition(x))
        for layer, norm in zip(stage.layers, self.consumer_norms):
            if layer.cldc is not None:
                y = _per_consumer_cldc(maps, layer.cldc.weight, layer.cldc.bias, norm)
            else:
                y = maps[0] if maps else x
            y = layer.conv1(layer.norm1(y))
            y = layer.conv2(layer.norm2(y))
            maps.append(layer.conv3(layer.norm3(y)))
        return _per_consumer_cldc(maps, stage.cldc.weight, stage.cldc.bias, self.head_norm)


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every weight away from its initial value so that no symmetry hides an error."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


STAGE_KINDS = [
    dict(in_chs=6, first_map='none', stride=1),        # first CIFAR stage: the input feeds layer 1 only
    dict(in_chs=6, first_map='projection', stride=1),  # first ImageNet stage: h0 is a bare 1x1 conv
    dict(in_chs=6, first_map='transition', stride=2),  # every later stage
]


@pytest.mark.parametrize('kind', STAGE_KINDS, ids=[k['first_map'] for k in STAGE_KINDS])
def test_stage_equals_per_consumer(kind):
    torch.manual_seed(0)
    stage = DelugeStage(width=4, depth=4, dtype=torch.float64, **kind)
    _perturb(stage, seed=1)
    reference = PerConsumerStage(stage)
    stage.train()
    reference.train()

    for step in range(3):
        x = torch.randn(4, 6, 8, 8, dtype=torch.float64) * (step + 1) + step
        out = stage(x)
        expected = reference(x)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)

        out.square().sum().backward()
        expected.square().sum().backward()
        for (name, p), p_ref in zip(stage.named_parameters(), reference.stage.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-8, atol=1e-9, msg=name)

    # Every consumer's running statistics of map i equal the shared row i.
    channels = stage.out_chs
    for layer, norm in zip(reference.stage.layers, reference.consumer_norms):
        if layer.cldc is None:
            continue
        for i in range(layer.cldc.num_inputs):
            group = slice(i * channels, (i + 1) * channels)
            torch.testing.assert_close(stage.norm.running_mean[i], norm.running_mean[group])
            torch.testing.assert_close(stage.norm.running_var[i], norm.running_var[group])

    stage.eval()
    reference.eval()
    with torch.no_grad():
        x = torch.randn(3, 6, 8, 8, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(stage(x), reference(x), rtol=1e-9, atol=1e-9)


def _reference_model_forward(model: nn.Module, stages: List[PerConsumerStage], x: torch.Tensor) -> torch.Tensor:
    x = model.stem(x)
    for stage in stages:
        x = stage(x)
    return model.forward_head(model.norm(x))


def _train_a_little(model: nn.Module, input_size, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(8, *input_size, generator=gen) * 1.5 + 0.3
        loss = model(x).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize('name, input_size', [
    ('delugenet_56_cifar', (3, 32, 32)),
    ('delugenet_92', (3, 64, 64)),
])
def test_eval_folding_exact(name, input_size):
    torch.manual_seed(0)
    model = timm.create_model(name)
    _train_a_little(model, input_size)
    model.eval()
    # Copies of the trained stages with per-consumer statistics equal to the shared ones.
    references = []
    for stage in model.stages:
        reference = PerConsumerStage(stage).eval()
        norms = list(reference.consumer_norms) + [reference.head_norm]
        consumers = [layer.cldc for layer in stage.layers] + [stage.cldc]
        for cldc, norm in zip(consumers, norms):
            if cldc is None:
                continue
            norm.running_mean.copy_(stage.norm.running_mean[:cldc.num_inputs].reshape(-1))
            norm.running_var.copy_(stage.norm.running_var[:cldc.num_inputs].reshape(-1))
        references.append(reference)

    x = torch.randn(2, *input_size)
    with torch.no_grad():
        out = model(x)
        expected = _reference_model_forward(model, references, x)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_folding_leaves_parameters():
    torch.manual_seed(0)
    model = timm.create_model('delugenet_56_cifar')
    _train_a_little(model, (3, 32, 32))
    untouched = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key

    # Training resumes exactly where a model that never ran in eval mode would be.
    model.train()
    untouched.train()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), untouched(x), rtol=0, atol=0)


def test_cldc_rejects_single_input():
    with pytest.raises(ValueError, match='num_inputs=1'):
        CrossLayerDepthwiseConv(8, 1)


def test_cldc_fold_matches_normalised_sum():
    torch.manual_seed(0)
    cldc = CrossLayerDepthwiseConv(5, 3, dtype=torch.float64)
    _perturb(cldc, seed=2)
    maps = [torch.randn(2, 5, 4, 4, dtype=torch.float64) * (i + 1) + i for i in range(3)]
    mean = torch.randn(3, 5, dtype=torch.float64)
    var = torch.rand(3, 5, dtype=torch.float64) + 0.5
    inv_std = torch.rsqrt(var + 1e-5)
    normalised = [(m - mean[i].reshape(1, 5, 1, 1)) * inv_std[i].reshape(1, 5, 1, 1) for i, m in enumerate(maps)]
    expected = sum(
        normalised[i] * cldc.weight[:, i].reshape(1, 5, 1, 1) + cldc.bias[:, i].reshape(1, 5, 1, 1)
        for i in range(3)
    )
    scale, shift = cldc.fold(mean, inv_std)
    torch.testing.assert_close(weighted_sum(maps, scale, shift), expected)
    torch.testing.assert_close(cldc(normalised), expected)
