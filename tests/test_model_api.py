"""The timm model API of the DelugeNet family: features, intermediates, heads, arguments and bad input."""
import copy

import pytest
import timm
import torch
import torch.nn as nn

import timm_deluge  # noqa: F401  registers the family


@pytest.mark.parametrize('name, input_size, reductions, channels', [
    ('delugenet_92', 64, [2, 4, 8, 16, 32], [64, 128, 256, 512, 1024]),
    ('delugenet_146_cifar', 32, [1, 1, 2, 4], [32, 64, 128, 256]),
    ('delugenet_146_wide_cifar', 32, [1, 1, 2, 4], [56, 112, 224, 448]),
])
def test_features_only_every_stride(name, input_size, reductions, channels):
    model = timm.create_model(name, features_only=True).eval()
    assert model.feature_info.reduction() == reductions
    assert model.feature_info.channels() == channels
    with torch.no_grad():
        features = model(torch.randn(2, 3, input_size, input_size))
    assert [f.shape[1] for f in features] == channels
    assert [f.shape[-1] for f in features] == [input_size // r for r in reductions]


def test_features_match_intermediates():
    torch.manual_seed(0)
    model = timm.create_model('delugenet_56_cifar').eval()
    features = timm.create_model('delugenet_56_cifar', features_only=True, out_indices=(1, 3)).eval()
    # The wrapper keeps the pruned model as `.model`, without the head.
    result = features.model.load_state_dict(model.state_dict(), strict=False)
    assert not result.missing_keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        taps = model.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
        for tap, feature in zip(taps, features(x)):
            torch.testing.assert_close(feature, tap)


def test_intermediates_final_equals_features():
    model = timm.create_model('delugenet_56_cifar').eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        # The last stage's tap is the head's cross-layer sum before its BatchNorm + ReLU.
        torch.testing.assert_close(model.norm(taps[-1]), final)
    assert len(taps) == len(model.feature_info)


def test_prune_keeps_taps():
    model = timm.create_model('delugenet_92').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        pruned = copy.deepcopy(model)
        indices = pruned.prune_intermediate_layers([2])
        assert len(pruned.stages) == 2
        assert pruned.num_features == 256
        torch.testing.assert_close(pruned.forward_intermediates(x, indices=indices, intermediates_only=True)[0], taps[2])


def test_in_chans_one():
    model = timm.create_model('delugenet_56_cifar.cifar10', in_chans=1).eval()
    assert model.stem.conv.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize('size', [32, 33, 47, 96])
def test_input_sizes(size):
    model = timm.create_model('delugenet_92', num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 7)


def test_non_square_input():
    model = timm.create_model('delugenet_56_cifar').eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 64)).shape == (1, 128, 8, 16)


def test_head_api():
    model = timm.create_model('delugenet_56_cifar', global_pool='max').eval()
    assert model.num_features == model.head_hidden_size == 128
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(pooled, features.amax((2, 3)))
        model.reset_classifier(5)
        assert model.get_classifier().out_features == 5
        # Pooling is kept when reset_classifier is not given one.
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), pooled)
        model.reset_classifier(0, '')
        assert model(x).shape == (2, 128, 8, 8)


def test_drop_rate_applied():
    model = timm.create_model('delugenet_56_cifar', drop_rate=0.5)
    assert model.head.drop.p == 0.5


def test_drop_path_trains():
    torch.manual_seed(0)
    model = timm.create_model('delugenet_56_cifar', drop_path_rate=0.3).train()
    x = torch.randn(4, 3, 32, 32)
    out1, out2 = model(x), model(x)
    assert not torch.allclose(out1, out2)
    out1.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_grad_checkpointing_same_grads():
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for enable in (False, True):
        torch.manual_seed(0)
        model = timm.create_model('delugenet_56_cifar').train()
        model.set_grad_checkpointing(enable)
        assert all(stage.grad_checkpointing == enable for stage in model.stages)
        model(x).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-6)


def test_group_matcher_per_layer():
    from timm.models._manipulate import group_parameters
    model = timm.create_model('delugenet_56_cifar', device='meta')
    groups = group_parameters(model, model.group_matcher(coarse=False))
    # Stem, every composite layer (transitions join layer 0, closing convs join the stage end) and the head.
    assert len(groups) > sum(len(s.layers) for s in model.stages)
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 1 + len(model.stages) + 1


def test_meta_device_and_dtype():
    model = timm.create_model('delugenet_122', device='meta', dtype=torch.bfloat16)
    assert all(p.device.type == 'meta' for p in model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(b.device.type == 'meta' for b in model.buffers())


def test_wrong_channel_count():
    model = timm.create_model('delugenet_56_cifar').eval()
    with pytest.raises(ValueError, match=r'in_chans=3.*4 channels'):
        model(torch.randn(1, 4, 32, 32))


def test_channels_last_array_hint():
    model = timm.create_model('delugenet_56_cifar').eval()
    with pytest.raises(ValueError, match=r'permute\(0, 3, 1, 2\)'):
        model(torch.randn(1, 32, 32, 3))


def test_zero_in_chans():
    with pytest.raises(ValueError, match='in_chans=0'):
        timm.create_model('delugenet_56_cifar', in_chans=0)


def test_not_4d_input():
    model = timm.create_model('delugenet_56_cifar').eval()
    with pytest.raises(ValueError, match=r'4-D input.*\(3, 32, 32\)'):
        model(torch.randn(3, 32, 32))


def test_unknown_argument():
    with pytest.raises(TypeError, match='not_an_arg'):
        timm.create_model('delugenet_56_cifar', not_an_arg=1)


def test_invalid_stem_type():
    from timm_deluge.models.delugenet import DelugeNet
    with pytest.raises(ValueError, match="stem_type='tiny'"):
        DelugeNet(stem_type='tiny')


def test_stage_too_shallow():
    from timm_deluge.models.delugenet import DelugeStage
    with pytest.raises(ValueError, match='depth=1'):
        DelugeStage(8, 4, 1, first_map='none')


def test_no_pretrained_claims():
    for name in timm.list_pretrained('delugenet*'):
        cfg = timm.models.get_pretrained_cfg(name)
        assert not cfg.url, name
        assert not cfg.file, name


def test_torchscript_matches_eager():
    torch.manual_seed(0)
    model = timm.create_model('delugenet_56_cifar').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_torchscript_trains():
    model = torch.jit.script(timm.create_model('delugenet_56_cifar').train())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert isinstance(model, torch.jit.ScriptModule)
    assert all(p.grad is not None for p in model.parameters())


def test_baseline_is_residual():
    model = timm.create_model('delugenet_baseline_146_3x3_cifar', device='meta')
    first = model.stages[1].blocks[0]
    assert first.downsample.conv.kernel_size == (3, 3)
    assert first.downsample.conv.stride == (2, 2)
    assert model.stages[1].blocks[1].downsample is None
    # The projection shortcut has no BatchNorm.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in first.downsample.modules())
