"""DelugeNet architecture: parameter counts, multiply-adds, layout and initialisation.

Expected values come from the DelugeNets paper (Kuen et al., arXiv:1611.05552) and from a rebuild of the
authors' Lua Torch7 code (github.com/xternalz/DelugeNets), which gives the paper's counts exactly.
"""
import math

import pytest
import timm
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

import timm_deluge  # noqa: F401  registers the family
from timm_deluge.layers import CrossLayerDepthwiseConv

# Learnable parameters of the paper's networks, rebuilt from the authors' Lua code (BatchNorm running statistics
# excluded). The paper quotes 6.69M, 10.00M, 20.19M, 6.15M, 18.76M, 43.4M, 51.4M and 63.6M.
SPEC_PARAMS = [
    ('delugenet_92', 43_404_072),
    ('delugenet_104', 51_353_896),
    ('delugenet_122', 63_620_392),
    ('delugenet_146_cifar.cifar100', 6_709_380),
    ('delugenet_146_cifar.cifar10', 6_686_250),
    ('delugenet_218_cifar.cifar100', 10_004_868),
    ('delugenet_218_cifar.cifar10', 9_981_738),
    ('delugenet_146_wide_cifar.cifar100', 20_191_068),
    ('delugenet_146_wide_cifar.cifar10', 20_150_658),
    ('delugenet_baseline_146_1x1_cifar.cifar100', 6_153_220),
    ('delugenet_baseline_146_wide_1x1_cifar.cifar100', 18_763_516),
]

# Conv and linear multiply-adds at 224 x 224 (the paper's GFLOPs 11.8 / 13.2 / 15.2 are about twice these).
SPEC_GMACS = [
    ('delugenet_92', 5.85),
    ('delugenet_104', 6.52),
    ('delugenet_122', 7.52),
]


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name, expected', SPEC_PARAMS)
def test_params_match_spec(name, expected):
    model = timm.create_model(name, device='meta')
    assert _count_params(model) == expected


@pytest.mark.parametrize('name, expected', SPEC_GMACS)
def test_macs_match_spec(name, expected):
    model = timm.create_model(name).eval()
    flops = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    gmacs = (by_op['conv'] + by_op['linear']) / 1e9
    assert gmacs == pytest.approx(expected, rel=0.01)


def test_wide_cifar_macs_match_spec():
    # The paper quotes 4.31 GFLOPs for Wide-DelugeNet-146, about 2.12 G multiply-adds.
    model = timm.create_model('delugenet_146_wide_cifar').eval()
    flops = FlopCountAnalysis(model, torch.randn(1, 3, 32, 32))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    assert (by_op['conv'] + by_op['linear']) / 1e9 == pytest.approx(2.12, rel=0.01)


@pytest.mark.parametrize('name, num_classes', [
    ('delugenet_146_cifar.cifar10', 10),
    ('delugenet_146_cifar.cifar100', 100),
    ('delugenet_218_cifar', 100),
    ('delugenet_122', 1000),
])
def test_cfg_class_count(name, num_classes):
    model = timm.create_model(name, device='meta')
    assert model.num_classes == num_classes
    assert model.pretrained_cfg['num_classes'] == num_classes


def test_cifar_cfg_normalisation():
    # fb.resnet.torch's per-channel statistics on the 0-255 scale.
    cfg10 = timm.create_model('delugenet_146_cifar.cifar10', device='meta').pretrained_cfg
    cfg100 = timm.create_model('delugenet_146_cifar.cifar100', device='meta').pretrained_cfg
    assert [round(m * 255, 1) for m in cfg10['mean']] == [125.3, 123.0, 113.9]
    assert [round(s * 255, 1) for s in cfg10['std']] == [63.0, 62.1, 66.7]
    assert [round(m * 255, 1) for m in cfg100['mean']] == [129.3, 124.1, 112.4]
    assert [round(s * 255, 1) for s in cfg100['std']] == [68.2, 65.4, 70.4]
    assert cfg10['input_size'] == (3, 32, 32)


def test_cfg_metadata():
    for name in timm.list_models('delugenet*'):
        cfg = timm.create_model(name, device='meta').pretrained_cfg
        assert cfg['paper_ids'] == 'arXiv:1611.05552', name
        assert cfg['license'] == 'mit', name
        assert cfg['first_conv'] == 'stem.conv', name
        assert cfg['classifier'] == 'head.fc', name


def test_names_are_ours_only():
    names = timm.list_models('*deluge*')
    assert len(names) == 15
    for name in names:
        entrypoint = timm.models.model_entrypoint(name)
        assert entrypoint.__module__.startswith('timm_deluge.'), name


def test_depth_rule():
    # Depth = 3 * composite layers + 2 (stem and classifier) for the CIFAR networks.
    for name, depth in [('delugenet_146_cifar', 146), ('delugenet_218_cifar', 218), ('delugenet_56_cifar', 56)]:
        model = timm.create_model(name, device='meta')
        num_layers = sum(len(stage.layers) for stage in model.stages)
        assert 3 * num_layers + 2 == depth


def test_stage_layout_cifar():
    model = timm.create_model('delugenet_146_cifar', device='meta')
    assert [len(s.layers) for s in model.stages] == [8, 16, 24]
    assert model.stages[0].transition is None
    # The first CIFAR stage has no h0: its first two layers read one map, so they have no cross-layer conv.
    assert model.stages[0].layers[0].cldc is None
    assert model.stages[0].layers[1].cldc is None
    assert model.stages[0].layers[2].cldc.num_inputs == 2
    assert model.stages[0].cldc.num_inputs == 8
    # Later stages start with h0, read by every layer.
    assert model.stages[1].layers[0].cldc is None
    assert model.stages[1].layers[1].cldc.num_inputs == 2
    assert model.stages[2].cldc.num_inputs == 25
    assert model.stages[0].layers[0].conv1.in_channels == 32
    assert model.stages[2].layers[-1].conv3.out_channels == 256


def test_stage_layout_imagenet():
    model = timm.create_model('delugenet_122', device='meta')
    assert [len(s.layers) for s in model.stages] == [7, 9, 11, 13]
    assert isinstance(model.stages[0].transition, nn.Conv2d)
    assert model.stages[0].transition.kernel_size == (1, 1)
    assert model.stages[0].cldc.num_inputs == 8
    assert model.stages[3].cldc.num_inputs == 14
    assert model.num_features == 1024
    assert [m.stride for m in (model.stages[1].transition.conv, model.stages[3].transition.conv)] == [(2, 2)] * 2


def test_no_conv_bias():
    model = timm.create_model('delugenet_92', device='meta')
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    assert all(m.bias is None for m in convs)


def test_init_cross_layer():
    model = timm.create_model('delugenet_56_cifar')
    cldcs = [m for m in model.modules() if isinstance(m, CrossLayerDepthwiseConv)]
    assert cldcs
    for cldc in cldcs:
        torch.testing.assert_close(cldc.weight, torch.full_like(cldc.weight, 1 / cldc.weight.shape[1]))
        assert torch.count_nonzero(cldc.bias) == 0


def test_init_conv_std():
    # Kaiming normal, fan_out: std = sqrt(2 / (k * k * C_out)).
    torch.manual_seed(0)
    model = timm.create_model('delugenet_146_wide_cifar')
    conv = model.stages[2].layers[5].conv2
    k, c_out = conv.kernel_size[0], conv.out_channels
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (k * k * c_out)), rel=0.03)
    assert conv.weight.mean().item() == pytest.approx(0, abs=0.01 * math.sqrt(2 / (k * k * c_out)))


def test_init_classifier_bias_zero():
    model = timm.create_model('delugenet_56_cifar')
    assert torch.count_nonzero(model.head.fc.bias) == 0
    assert model.head.fc.weight.std() > 0


def test_drop_path_off_by_default():
    model = timm.create_model('delugenet_56_cifar', device='meta')
    assert all(isinstance(layer.drop_path, nn.Identity) for stage in model.stages for layer in stage.layers)


def test_drop_path_rates_rise():
    model = timm.create_model('delugenet_56_cifar', drop_path_rate=0.2, device='meta')
    layers = [layer for stage in model.stages for layer in stage.layers]
    # The first composite layer gets rate 0, so it has no DropPath module.
    assert isinstance(layers[0].drop_path, nn.Identity)
    rates = [layer.drop_path.drop_prob for layer in layers[1:]]
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(0.2)
