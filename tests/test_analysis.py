"""Tests of connection strengths, connection plots, checkpoint loading and model summaries.

Expected values come from the weights themselves (norms computed here with NumPy), from the architecture's
published parameter and multiply-add counts, and from the stage structure. A stage that starts with a block
transition (or the ImageNet 1x1 projection) has a map h0, so its layer k reads k maps. The first CIFAR stage has
no h0, so its layer k reads the k - 1 maps h1 .. h(k-1). Each stage's closing cross-layer convolution reads all of
its maps.
"""
import argparse
import csv
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import safetensors.torch
import torch

import timm
from timm.models import save_for_hf
from timm.utils import CheckpointSaver, ModelEmaV3

import timm_deluge  # noqa: F401
from timm_deluge.analysis import (
    connection_strengths, load_model, plot_connections, summarize_model, write_connections_csv,
)

# Composite layers per stage and bottleneck widths n of each model, from the architecture specification.
SPEC = {
    'delugenet_56_cifar': ((3, 6, 9), (16, 32, 64), 'cifar'),
    'delugenet_146_cifar': ((8, 16, 24), (32, 64, 128), 'cifar'),
    'delugenet_218_cifar': ((12, 24, 36), (32, 64, 128), 'cifar'),
    'delugenet_146_wide_cifar': ((8, 16, 24), (56, 112, 224), 'cifar'),
    'delugenet_92': ((7, 7, 8, 8), (64, 128, 256, 512), 'imagenet'),
    'delugenet_104': ((7, 8, 9, 10), (64, 128, 256, 512), 'imagenet'),
    'delugenet_122': ((7, 9, 11, 13), (64, 128, 256, 512), 'imagenet'),
}
# Published parameter counts of the architecture specification (BatchNorm running statistics excluded).
SPEC_PARAMS = {
    'delugenet_146_cifar': 6_709_380,
    'delugenet_146_cifar.cifar10': 6_686_250,
    'delugenet_218_cifar': 10_004_868,
    'delugenet_146_wide_cifar': 20_191_068,
    'delugenet_92': 43_404_072,
    'delugenet_104': 51_353_896,
    'delugenet_122': 63_620_392,
    'delugenet_baseline_146_1x1_cifar': 6_153_220,
    'delugenet_baseline_146_wide_1x1_cifar': 18_763_516,
}
# Conv + linear multiply-adds in G, for one image at the model's input size.
SPEC_GMACS = {
    'delugenet_92': 5.85,
    'delugenet_104': 6.52,
    'delugenet_122': 7.52,
    'delugenet_146_wide_cifar': 2.12,
}


def stage_inputs(depths: Tuple[int, ...], stem: str) -> List[Dict[str, object]]:
    """Return, per stage, the layer indices of its maps and the number of maps each consumer reads."""
    stages = []
    for s, depth in enumerate(depths):
        has_h0 = s > 0 or stem == 'imagenet'
        if has_h0:
            maps = list(range(depth + 1))
            layer_reads = {k: k for k in range(1, depth + 1)}
        else:
            maps = list(range(1, depth + 1))
            layer_reads = {k: k - 1 for k in range(1, depth + 1)}
        stages.append(dict(maps=maps, layer_reads=layer_reads, has_h0=has_h0))
    return stages


def spec_cross_layer_params(name: str) -> int:
    """Count 2 * C * N parameters for every consumer that reads N >= 2 maps of C = 2n channels."""
    depths, widths, stem = SPEC[name]
    total = 0
    for stage, width in zip(stage_inputs(depths, stem), widths):
        channels = 2 * width
        readers = list(stage['layer_reads'].values()) + [len(stage['maps'])]
        total += sum(2 * channels * n for n in readers if n >= 2)
    return total


def randomize_cross_layer_weights(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == 'CrossLayerDepthwiseConv':
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 2 - 0.5)


def column_norms(weight: torch.Tensor) -> np.ndarray:
    array = weight.detach().double().numpy()
    norms = np.sqrt((array ** 2).sum(axis=0))
    return norms / norms.max()


def expected_tick_labels(maps: List[int], h0_name: str) -> List[str]:
    return [h0_name if k == 0 else str(k) for k in maps]


@pytest.fixture(scope='module')
def small_model() -> torch.nn.Module:
    model = timm.create_model('delugenet_56_cifar', num_classes=10, in_chans=1).eval()
    randomize_cross_layer_weights(model, seed=0)
    return model


def test_fresh_weights_uniform():
    model, description = load_model('delugenet_56_cifar')
    assert description == 'delugenet_56_cifar, freshly initialised weights'
    fig = plot_connections(connection_strengths(model, layers=False))
    for ax in fig.axes:
        widths = [patch.get_width() for patch in ax.patches]
        assert widths
        assert widths == pytest.approx([1.0] * len(widths))


def test_plot_bars_match_weights(small_model):
    depths, _, stem = SPEC['delugenet_56_cifar']
    stages = stage_inputs(depths, stem)
    fig = plot_connections(connection_strengths(small_model, layers=False))
    assert len(fig.axes) == len(depths)
    titles = [ax.get_title().split('\n')[0] for ax in fig.axes]
    assert titles == ['transition 1', 'transition 2', 'classifier']

    for i, ax in enumerate(fig.axes):
        expected = column_norms(small_model.stages[i].cldc.weight)
        widths = np.array([patch.get_width() for patch in ax.patches])
        np.testing.assert_allclose(widths, expected, rtol=1e-6)
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == expected_tick_labels(stages[i]['maps'], 'h0 (transition)')
        assert ax.get_xlabel() == 'normalised L2 norm'
        # The first input is drawn at the top.
        assert ax.get_ylim()[0] > ax.get_ylim()[1]
    assert fig.axes[0].get_ylabel() == 'composite layer index in block'


def test_plot_imagenet_projection_h0():
    model = timm.create_model('delugenet_92').eval()
    randomize_cross_layer_weights(model, seed=1)
    fig = plot_connections(connection_strengths(model, layers=False))
    titles = [ax.get_title().split('\n')[0] for ax in fig.axes]
    assert titles == ['transition 1', 'transition 2', 'transition 3', 'classifier']
    # Stage 1 of the ImageNet models starts with a 1x1 projection, which is h0 of its transition.
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == expected_tick_labels(list(range(8)), 'h0 (projection)')
    widths = np.array([patch.get_width() for patch in fig.axes[3].patches])
    np.testing.assert_allclose(widths, column_norms(model.stages[3].cldc.weight), rtol=1e-6)


def test_heat_map_matches_weights(small_model):
    depths, _, stem = SPEC['delugenet_56_cifar']
    stages = stage_inputs(depths, stem)
    fig = plot_connections(connection_strengths(small_model), heat_map=True)
    heat_axes = [ax for ax in fig.axes if ax.images]
    assert len(heat_axes) == len(depths)
    for s, ax in enumerate(heat_axes):
        grid = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        maps = stages[s]['maps']
        consumers = [k for k, n in stages[s]['layer_reads'].items() if n >= 2]
        assert grid.shape == (len(consumers) + 1, len(maps))
        for row, k in enumerate(consumers):
            n = stages[s]['layer_reads'][k]
            expected = column_norms(small_model.stages[s].layers[k - 1].cldc.weight)
            np.testing.assert_allclose(grid[row, :n], expected, rtol=1e-6)
            assert np.isnan(grid[row, n:]).all()
        np.testing.assert_allclose(grid[-1], column_norms(small_model.stages[s].cldc.weight), rtol=1e-6)


def test_csv_matches_weights(small_model, tmp_path):
    path = write_connections_csv(connection_strengths(small_model), tmp_path / 'norms.csv')
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))

    depths, _, stem = SPEC['delugenet_56_cifar']
    expected_rows = 0
    for s, stage in enumerate(stage_inputs(depths, stem)):
        expected_rows += sum(n for n in stage['layer_reads'].values() if n >= 2) + len(stage['maps'])
    assert len(rows) == expected_rows

    by_module: Dict[str, List[dict]] = {}
    for row in rows:
        by_module.setdefault(row['module'], []).append(row)
    for module_name, module_rows in by_module.items():
        weight = small_model.get_submodule(module_name).weight
        np.testing.assert_allclose(
            [float(r['normalised_l2_norm']) for r in module_rows], column_norms(weight), rtol=1e-6)
        raw = np.sqrt((weight.detach().double().numpy() ** 2).sum(axis=0))
        np.testing.assert_allclose([float(r['l2_norm']) for r in module_rows], raw, rtol=1e-6)

    transition = by_module['stages.0.cldc']
    assert [int(r['layer_index']) for r in transition] == [1, 2, 3]
    assert {r['consumer'] for r in transition} == {'transition 1'}
    classifier = by_module['stages.2.cldc']
    assert [int(r['layer_index']) for r in classifier] == list(range(10))
    assert classifier[0]['input'] == 'h0 (transition)'
    assert by_module['stages.1.layers.1.cldc'][0]['consumer'] == 'stage 2 layer 2'


def test_outputs_not_overwritten(small_model, tmp_path):
    path = tmp_path / 'plot.png'
    path.write_bytes(b'keep')
    with pytest.raises(FileExistsError, match='plot.png'):
        plot_connections(connection_strengths(small_model), path)
    assert path.read_bytes() == b'keep'
    plot_connections(connection_strengths(small_model), path, overwrite=True)
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert [p.name for p in tmp_path.iterdir()] == ['plot.png']


def _save_training_checkpoint(model: torch.nn.Module, ema_seed: int, folder: Path) -> Path:
    ema = ModelEmaV3(model)
    randomize_cross_layer_weights(ema.module, seed=ema_seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(
        model, optimizer, args=argparse.Namespace(model='delugenet_56_cifar'), model_ema=ema,
        checkpoint_dir=str(folder), recovery_dir=str(folder))
    saver.save_checkpoint(epoch=0, metric=50.0)
    return folder / 'last.pth.tar'


def test_load_timm_checkpoint(small_model, tmp_path):
    path = _save_training_checkpoint(small_model, ema_seed=7, folder=tmp_path)
    ema_model, description = load_model(str(path))
    assert description == 'delugenet_56_cifar, EMA weights from last.pth.tar'
    assert ema_model.num_classes == 10
    assert ema_model.in_chans == 1
    assert not ema_model.training
    ema_weight = ema_model.stages[2].cldc.weight
    assert not torch.equal(ema_weight, small_model.stages[2].cldc.weight)

    model, description = load_model(str(path), use_ema=False)
    assert description == 'delugenet_56_cifar, weights from last.pth.tar'
    for name, tensor in small_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_load_safetensors(small_model, tmp_path):
    path = tmp_path / 'model.safetensors'
    safetensors.torch.save_file(small_model.state_dict(), str(path))
    model, _ = load_model(str(path), model_name='delugenet_56_cifar')
    assert torch.equal(model.stages[1].cldc.weight, small_model.stages[1].cldc.weight)
    with pytest.raises(ValueError, match='model.safetensors.*--model'):
        load_model(str(path))
    with pytest.raises(ValueError, match="'delugenet_146_cifar'"):
        load_model(str(path), model_name='delugenet_146_cifar')


def test_load_local_dir(small_model, tmp_path):
    save_for_hf(small_model, str(tmp_path / 'export'), safe_serialization=True)
    model, description = load_model(f'local-dir:{tmp_path / "export"}')
    assert description.startswith('delugenet_56_cifar, weights from local-dir:')
    assert model.in_chans == 1
    assert torch.equal(model.stages[0].cldc.weight, small_model.stages[0].cldc.weight)


def test_load_bad_inputs(tmp_path):
    missing = str(tmp_path / 'missing.pth.tar')
    with pytest.raises(FileNotFoundError, match='missing.pth.tar'):
        load_model(missing)
    with pytest.raises(ValueError, match='delugenet_57_cifar'):
        load_model('delugenet_57_cifar')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        load_model(f'local-dir:{tmp_path / "nowhere"}')
    not_a_checkpoint = tmp_path / 'notes.pth'
    not_a_checkpoint.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='notes.pth'):
        load_model(str(not_a_checkpoint))


def test_baseline_has_no_connections():
    model, _ = load_model('delugenet_baseline_56_1x1_cifar')
    with pytest.raises(ValueError, match='no cross-layer depthwise convolutions'):
        connection_strengths(model)


@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_summary_params(name):
    summary = summarize_model(name, multiply_adds=False)
    assert summary.num_params == SPEC_PARAMS[name]


@pytest.mark.parametrize('name', sorted(SPEC))
def test_summary_structure(name):
    depths, widths, stem = SPEC[name]
    summary = summarize_model(name, multiply_adds=False)
    # The number in each name is the depth: 3 convolutions per composite layer, plus stem and classifier.
    assert summary.depth == int(name.split('_')[1])
    assert summary.depth == 3 * sum(depths) + 2
    assert [s.layers for s in summary.stages] == list(depths)
    assert [s.width for s in summary.stages] == list(widths)
    assert [s.channels for s in summary.stages] == [2 * w for w in widths]
    strides = [f['reduction'] for f in summary.feature_info]
    assert strides == ([2, 4, 8, 16, 32] if stem == 'imagenet' else [1, 1, 2, 4])
    # Every CIFAR model has a configuration per dataset, the CIFAR-100 one first as the default.
    if stem == 'cifar':
        assert summary.pretrained_tags[:2] == ['cifar100', 'cifar10']
        assert summary.default_tag == 'cifar100'
    registered = timm.list_models(name, include_tags=True)
    assert sorted(f'{name}.{tag}' for tag in summary.pretrained_tags) == sorted(t for t in registered if '.' in t)
    with_weights = timm.list_models(name, pretrained=True, include_tags=True)
    assert sorted(f'{name}.{tag}' for tag in summary.tags_with_weights) == sorted(with_weights)


@pytest.mark.parametrize('name', sorted(SPEC))
def test_summary_cross_layer_share(name):
    summary = summarize_model(name, multiply_adds=False)
    expected = spec_cross_layer_params(name)
    assert summary.cross_layer_params == expected
    assert summary.cross_layer_share == pytest.approx(expected / summary.num_params)


def test_summary_share_published_counts():
    shares = []
    for name in ('delugenet_146_cifar', 'delugenet_218_cifar', 'delugenet_146_wide_cifar'):
        summary = summarize_model(name, multiply_adds=False)
        share = spec_cross_layer_params(name) / SPEC_PARAMS[name]
        assert summary.cross_layer_share == pytest.approx(share)
        shares.append(share)
    # Kuen et al. (arXiv:1611.05552, section 3.2) find the cross-layer parameters to be about 3% of a model on
    # average. Their three CIFAR models give that average here, while the ImageNet models are below 1%.
    assert 0.025 < sum(shares) / len(shares) < 0.035


def test_summary_baseline():
    summary = summarize_model('delugenet_baseline_146_1x1_cifar', multiply_adds=False)
    assert summary.cross_layer_params == 0
    assert summary.depth == 146
    assert [s.layers for s in summary.stages] == [8, 16, 24]


@pytest.mark.parametrize('name', sorted(SPEC_GMACS))
def test_summary_multiply_adds(name):
    summary = summarize_model(name)
    assert round(summary.multiply_adds / 1e9, 2) == SPEC_GMACS[name]


def test_summary_rejects_other_models():
    with pytest.raises(ValueError, match='resnet18'):
        summarize_model('resnet18', multiply_adds=False)
    with pytest.raises(ValueError, match='delugenet_57_cifar'):
        summarize_model('delugenet_57_cifar', multiply_adds=False)


def test_summary_macs_follow_in_chans():
    # Only the stem's 3x3 conv (16 output channels at 32 x 32) reads the input channels.
    three = summarize_model('delugenet_56_cifar').multiply_adds
    one = summarize_model('delugenet_56_cifar', in_chans=1).multiply_adds
    assert three - one == (3 - 1) * 3 * 3 * 16 * 32 * 32
