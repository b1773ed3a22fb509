"""DelugeNet under torch.compile, channels_last, bf16 autocast and TorchScript, against eager float32.

Each test runs the small `delugenet_56_cifar` on a few 32 x 32 images in eval mode (folded normalisation) and
in train mode (batch statistics, custom autograd functions). It compares outputs and gradients with an eager,
contiguous float32 run of a copy of the same model.
"""
import copy
from typing import Dict, Tuple

import pytest
import timm
import torch
import torch.nn as nn

import timm_deluge  # noqa: F401  registers the family
from timm_deluge.layers import weighted_sum
from timm_deluge.layers.cross_layer import CrossLayerNorm


def _perturbed_model() -> nn.Module:
    """Return delugenet_56_cifar with weights and running statistics moved away from their initial values."""
    torch.manual_seed(0)
    model = timm.create_model('delugenet_56_cifar', num_classes=10)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model


@pytest.fixture(scope='module')
def model() -> nn.Module:
    return _perturbed_model()


@pytest.fixture(scope='module')
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 1.5 + 0.2


def _train_step(model: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Return the train-mode output and the gradients of a fixed loss."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().logsumexp(1).sum().backward()
    return out.detach(), {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _assert_grads_close(grads: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], **tol) -> None:
    assert grads.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], msg=name, **tol)


def test_compile_eval_fullgraph(model, images):
    eager = copy.deepcopy(model).eval()
    compiled = torch.compile(copy.deepcopy(model).eval(), fullgraph=True)
    with torch.no_grad():
        expected = eager(images)
        out = compiled(images)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_compile_train_fullgraph(model, images):
    # fullgraph=True raises on any graph break. The aot_eager backend traces forward and backward through
    # AOTAutograd like inductor, without inductor's C++ build, which keeps this test short.
    eager = copy.deepcopy(model)
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, fullgraph=True, backend='aot_eager')
    expected, expected_grads = _train_step(eager, images)

    compiled_model.train()
    out = compiled(images)
    out.logsumexp(1).sum().backward()
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-5)
    _assert_grads_close(
        {name: p.grad for name, p in compiled_model.named_parameters()}, expected_grads, rtol=1e-4, atol=1e-5)
    for name, buffer in compiled_model.named_buffers():
        torch.testing.assert_close(buffer, dict(eager.named_buffers())[name], msg=name)


@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_dynamo_no_graph_breaks(model, images, training):
    explain = torch._dynamo.explain(copy.deepcopy(model).train(training))(images)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1


def test_channels_last_eval(model, images):
    eager = copy.deepcopy(model).eval()
    cl_model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = eager(images)
        out = cl_model(images.contiguous(memory_format=torch.channels_last))
        features = cl_model.forward_features(images.contiguous(memory_format=torch.channels_last))
        expected_features = eager.forward_features(images)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features, expected_features, rtol=1e-4, atol=1e-5)


def test_channels_last_train(model, images):
    # Batch statistics of 4 images make float32 gradients differ by about 1% between any two summation orders
    # (float32 against float64 too), so the layouts are compared in float64.
    model64 = copy.deepcopy(model).double()
    expected, expected_grads = _train_step(copy.deepcopy(model64), images.double())
    cl_model = copy.deepcopy(model64).to(memory_format=torch.channels_last)
    out, grads = _train_step(cl_model, images.double().contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    _assert_grads_close(grads, expected_grads, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_bf16_autocast(model, images, training):
    eager = copy.deepcopy(model).train(training)
    low = copy.deepcopy(model).train(training)
    with torch.no_grad():
        expected = eager(images)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = low(images)
    assert out.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits, so through 56 layers the logits drift by a few percent of their spread.
    error = (out.float() - expected).abs().max()
    assert error < 0.05 * expected.std() + 0.05, f'max error {error:.4f}, logit std {expected.std():.4f}'
    assert (out.float().argmax(1) == expected.argmax(1)).float().mean() >= 0.75


def test_bf16_autocast_backward(model, images):
    low = copy.deepcopy(model).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = low(images)
    out.float().logsumexp(1).sum().backward()
    for name, p in low.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_torchscript_matches_eager(model, images, training):
    eager = copy.deepcopy(model).train(training)
    scripted = torch.jit.script(copy.deepcopy(model).train(training))
    with torch.no_grad():
        expected = eager(images)
        out = scripted(images)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    if training:
        # Both updated the running statistics of every shared normalisation the same way.
        for name, buffer in scripted.named_buffers():
            torch.testing.assert_close(buffer, dict(eager.named_buffers())[name], msg=name)


def test_eval_forward_leaves_state(model, images):
    trained = copy.deepcopy(model)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    trained.eval()
    with torch.no_grad():
        trained(images)
    trained.train()
    for key, value in trained.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_weighted_sum_gradcheck():
    gen = torch.Generator().manual_seed(3)
    maps = [torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    scale = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, b, *xs: weighted_sum(list(xs), s, b), (scale, shift, *maps))

    expected = sum(x * scale[:, i].reshape(1, 3, 1, 1) for i, x in enumerate(maps)) + shift.reshape(1, 3, 1, 1)
    torch.testing.assert_close(weighted_sum(maps, scale, shift), expected)


def test_batch_stats_match_batch_norm():
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 1).requires_grad_()
    norm = CrossLayerNorm(3, num_maps=2, dtype=torch.float64).train()
    reference = nn.BatchNorm2d(3, affine=False, dtype=torch.float64).train()
    mean, inv_std = norm.batch_stats(x, 1)
    normed = (x - mean.reshape(1, 3, 1, 1)) * inv_std.reshape(1, 3, 1, 1)
    expected = reference(x)
    torch.testing.assert_close(normed, expected)
    torch.testing.assert_close(norm.running_mean[1], reference.running_mean)
    torch.testing.assert_close(norm.running_var[1], reference.running_var)
    assert torch.equal(norm.running_mean[0], torch.zeros(3, dtype=torch.float64))

    weight = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    grad, = torch.autograd.grad((normed * weight).sum(), x)
    expected_grad, = torch.autograd.grad((expected * weight).sum(), x)
    torch.testing.assert_close(grad, expected_grad)
