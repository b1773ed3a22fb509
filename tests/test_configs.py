"""Every recipe in train_configs/: parses as timm train.py arguments and states the DelugeNet paper's settings.

The expected values are those of Kuen et al., arXiv:1611.05552, sections 4.1 (CIFAR) and 4.2 (ImageNet).
"""
import os
import runpy
from pathlib import Path

import pytest
import timm
import torch
import yaml

import timm_deluge  # noqa: F401
from timm.optim import create_optimizer_v2

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'train_configs'
CONFIGS = sorted(CONFIG_DIR.glob('*.yaml'))
CIFAR_CONFIGS = [p for p in CONFIGS if '_cifar_cifar' in p.name]
IMAGENET_CONFIGS = [p for p in CONFIGS if p.name.endswith('_imagenet.yaml')]
CIFAR_MODELS = ('delugenet_146_cifar', 'delugenet_218_cifar', 'delugenet_146_wide_cifar', 'delugenet_56_cifar')
IMAGENET_MODELS = ('delugenet_92', 'delugenet_104', 'delugenet_122')

# Per-channel CIFAR statistics of fb.resnet.torch, which the DelugeNet authors trained with, on the 0-255 scale.
CIFAR_STATS = {
    'cifar10': ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    'cifar100': ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _train_py_parser():
    """Return the argument parser of timm's train.py from $TIMM_SCRIPTS_DIR or ../third_party/pytorch-image-models."""
    candidates = [
        os.environ.get('TIMM_SCRIPTS_DIR'),
        Path(__file__).resolve().parents[2] / 'third_party' / 'pytorch-image-models',
    ]
    for folder in candidates:
        if folder and (Path(folder) / 'train.py').is_file():
            module = runpy.run_path(str(Path(folder) / 'train.py'), run_name='timm_train_py')
            return module['parser']
    pytest.skip('needs timm\'s train.py: set TIMM_SCRIPTS_DIR to a pytorch-image-models checkout')


def test_configs_cover_models():
    assert sorted(p.name for p in CIFAR_CONFIGS) == sorted(
        f'{m}_{d}.yaml' for m in CIFAR_MODELS for d in ('cifar10', 'cifar100'))
    assert sorted(p.name for p in IMAGENET_CONFIGS) == sorted(f'{m}_imagenet.yaml' for m in IMAGENET_MODELS)
    assert (CONFIG_DIR / 'fashion_mnist_quick.yaml').is_file()


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_keys_are_train_py_args(path):
    parser = _train_py_parser()
    dests = {action.dest for action in parser._actions}
    recipe = _load(path)

    assert set(recipe) <= dests, f'not train.py arguments: {sorted(set(recipe) - dests)}'
    parser.set_defaults(**recipe)
    args = parser.parse_args([])
    for key, value in recipe.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_model_builds(path):
    recipe = _load(path)
    kwargs = {'num_classes': recipe['num_classes']}
    if 'in_chans' in recipe:
        kwargs['in_chans'] = recipe['in_chans']
    model = timm.create_model(recipe['model'], **kwargs).eval()
    with torch.no_grad():
        output = model(torch.randn(1, *recipe['input_size']))

    assert output.shape == (1, recipe['num_classes'])


@pytest.mark.parametrize('path', CIFAR_CONFIGS, ids=lambda p: p.stem)
def test_cifar_recipe(path):
    recipe = _load(path)
    dataset = path.stem.rsplit('_', 1)[1]
    mean, std = CIFAR_STATS[dataset]

    assert recipe['dataset'] == f'torch/{dataset}'
    assert recipe['num_classes'] == {'cifar10': 10, 'cifar100': 100}[dataset]
    assert recipe['batch_size'] == 64
    assert recipe['epochs'] == 300
    assert recipe['opt'] == 'sgd'
    assert recipe['momentum'] == 0.9
    assert recipe['opt_kwargs'] == {'nesterov': True, 'filter_bias_and_bn': False}
    assert recipe['lr'] == 0.1
    assert recipe['weight_decay'] == 1e-4
    assert recipe['sched'] == 'multistep'
    assert recipe['decay_milestones'] == [150, 225]
    assert recipe['decay_rate'] == 0.1
    assert recipe['warmup_epochs'] == 0
    assert recipe['hflip'] == 0.5
    assert recipe['smoothing'] == 0.0
    assert recipe['mean'] == pytest.approx([m / 255 for m in mean], abs=1e-6)
    assert recipe['std'] == pytest.approx([s / 255 for s in std], abs=1e-6)


@pytest.mark.parametrize('path', IMAGENET_CONFIGS, ids=lambda p: p.stem)
def test_imagenet_recipe(path):
    recipe = _load(path)

    # 8 processes of 32 images make the paper's total batch of 256, split over 8 GPUs.
    assert recipe['batch_size'] * 8 == 256
    assert recipe['epochs'] == 100
    assert recipe['opt_kwargs'] == {'nesterov': True, 'filter_bias_and_bn': False}
    assert recipe['lr'] == 0.1
    assert recipe['weight_decay'] == 1e-4
    assert recipe['sched'] == 'step'
    assert recipe['decay_epochs'] == 30
    assert recipe['decay_rate'] == 0.1
    assert recipe['scale'] == [0.08, 1.0]
    assert recipe['ratio'] == pytest.approx([3 / 4, 4 / 3])
    assert recipe['color_jitter'] == 0.4
    assert recipe['crop_pct'] == pytest.approx(224 / 256)


def test_recipe_decays_every_parameter():
    recipe = _load(CIFAR_CONFIGS[0])
    model = timm.create_model('delugenet_56_cifar')
    optimizer = create_optimizer_v2(
        model, opt=recipe['opt'], lr=recipe['lr'], weight_decay=recipe['weight_decay'],
        momentum=recipe['momentum'], **recipe['opt_kwargs'])

    assert isinstance(optimizer, torch.optim.SGD)
    params = [p for group in optimizer.param_groups for p in group['params']]
    assert len(params) == len(list(model.parameters()))
    assert any(p.ndim == 1 for p in params)
    for group in optimizer.param_groups:
        assert group['weight_decay'] == 1e-4
        assert group['nesterov'] is True


def test_quick_recipe_fashion_mnist():
    recipe = _load(CONFIG_DIR / 'fashion_mnist_quick.yaml')

    assert recipe['dataset'] == 'torch/fashion_mnist'
    assert recipe['val_split'] == 'test'
    assert recipe['num_classes'] == 10
    assert recipe['in_chans'] == 1
    assert recipe['input_size'] == [1, 28, 28]
    assert recipe['model'] == 'delugenet_56_cifar'
    assert recipe['model_ema'] is True
