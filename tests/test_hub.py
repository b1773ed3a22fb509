"""Publishing checkpoints with hub/ and loading them back through every timm source, offline.

The tests write real checkpoints (timm's CheckpointSaver, torch.save, safetensors), publish them, build a real
Hugging Face cache from the published folder and load it with ``HF_HUB_OFFLINE=1``. Expected values come from
the source models and from independent computations (hashes, hooks), never from the code under test.
"""
import argparse
import gzip
import hashlib
import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import huggingface_hub
import pytest
import safetensors.torch
import timm
import torch
import torch.nn as nn
import yaml
from huggingface_hub import constants as hf_constants
from PIL import Image
from timm.utils import CheckpointSaver, ModelEmaV3

import timm_deluge  # noqa: F401  registers the family

# hub/ is run from a source checkout and is not installed, so the repository root must be importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hub.card import EvalReport  # noqa: E402
from hub.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from hub.local_cache import add_to_hf_cache  # noqa: E402
from hub.publish import PublishRequest, main as publish_main, publish, push_folder  # noqa: E402

ARCH = 'delugenet_56_cifar'
ORG = 'timm-deluge-test'
FMNIST_REPO = f'{ORG}/{ARCH}.fmnist'
CIFAR_REPO = f'{ORG}/{ARCH}.cifar10'
FMNIST_MEAN, FMNIST_STD = (0.286,), (0.353,)
EVAL_REPORT = EvalReport(
    top1=87.65, top5=99.5, dataset='zalando-datasets/fashion_mnist', split='test (10,000 images)',
    method='hand-written test value')


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Give every parameter and BatchNorm statistic a seeded random value, so no two models agree by chance."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith('running_var') else (values - 0.5) * 0.5)
    return model.eval()


def _outputs(model: nn.Module, channels: int) -> torch.Tensor:
    x = torch.randn(2, channels, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope='module')
def offline_cache(tmp_path_factory):
    """Empty HF cache, with offline mode on and the endpoint on a closed loopback port as a network trap."""
    cache = tmp_path_factory.mktemp('hf_cache')
    patch = pytest.MonkeyPatch()
    patch.setenv('HF_HUB_OFFLINE', '1')
    patch.setenv('HF_HUB_CACHE', str(cache))
    patch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    patch.setattr(hf_constants, 'HF_HUB_CACHE', str(cache))
    patch.setattr(hf_constants, 'ENDPOINT', 'http://127.0.0.1:9')
    yield cache
    patch.undo()


@pytest.fixture(scope='module')
def fmnist(tmp_path_factory):
    """A 1-channel, 10-class checkpoint written by timm's CheckpointSaver, with EMA weights, and its models."""
    folder = tmp_path_factory.mktemp('train')
    model = _randomize(timm.create_model(ARCH, num_classes=10, in_chans=1), seed=0)
    ema = ModelEmaV3(model)
    _randomize(ema.module, seed=1)
    args = argparse.Namespace(
        model=ARCH, epochs=3, lr=0.1, batch_size=64, opt='sgd', weight_decay=1e-4, mean=list(FMNIST_MEAN),
        std=list(FMNIST_STD), input_size=[1, 28, 28], crop_pct=1.0, interpolation='bilinear')
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(folder))
    saver.save_checkpoint(epoch=2, metric=12.5)
    return dict(checkpoint=folder / 'last.pth.tar', model=model, ema=ema.module.eval())


@pytest.fixture(scope='module')
def published(fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp('hub') / ORG / f'{ARCH}.fmnist'
    folder = publish(PublishRequest(
        checkpoint=fmnist['checkpoint'], tag='fmnist', org=ORG, out=out,
        datasets=['zalando-datasets/fashion_mnist'], eval_report=EVAL_REPORT))
    return folder


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    """A 3-channel, 10-class bare state dict (.pth) published as the cifar10 tag."""
    root = tmp_path_factory.mktemp('cifar')
    model = _randomize(timm.create_model(f'{ARCH}.cifar10'), seed=2)
    torch.save(model.state_dict(), root / 'weights.pth')
    folder = publish(PublishRequest(
        checkpoint=root / 'weights.pth', tag='cifar10', model_name=ARCH, org=ORG, out=root / 'hub'))
    return dict(model=model, folder=folder)


@pytest.fixture(scope='module')
def hub_cache(offline_cache, published, cifar):
    add_to_hf_cache(published, FMNIST_REPO, cache_dir=offline_cache)
    add_to_hf_cache(cifar['folder'], CIFAR_REPO, cache_dir=offline_cache)
    return offline_cache


def _copy_folder(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy


# Publishing: folder contents, config.json and model card.

def test_publish_folder_files(published, fmnist):
    assert sorted(p.name for p in published.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    tensors = safetensors.torch.load_file(published / 'model.safetensors')
    expected = fmnist['model'].state_dict()
    assert tensors.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(tensors[key], value), key


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_publish_default_permissions(published, hub_cache):
    umask = _umask()
    assert stat.S_IMODE(published.stat().st_mode) == 0o777 & ~umask
    for path in published.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
    blobs = hub_cache / f"models--{FMNIST_REPO.replace('/', '--')}" / 'blobs'
    for blob in blobs.iterdir():
        assert stat.S_IMODE(blob.stat().st_mode) == 0o666 & ~umask, blob.name


def test_publish_no_temp_left(published):
    assert [p.name for p in published.parent.iterdir()] == [published.name]


def test_config_json_timm_format(published):
    config = json.loads((published / 'config.json').read_text())
    assert config['architecture'] == ARCH
    assert config['num_classes'] == 10
    assert config['model_args']['in_chans'] == 1
    pretrained_cfg = config['pretrained_cfg']
    assert pretrained_cfg['tag'] == 'fmnist'
    assert pretrained_cfg['input_size'] == [1, 28, 28]
    assert pretrained_cfg['mean'] == list(FMNIST_MEAN)
    assert pretrained_cfg['std'] == list(FMNIST_STD)
    assert pretrained_cfg['crop_pct'] == 1.0
    assert pretrained_cfg['license'] == 'mit'


def test_card_front_matter(published):
    text = (published / 'README.md').read_text()
    assert text.startswith('---\n')
    front = yaml.safe_load(text.split('---\n')[1])
    assert front['library_name'] == 'timm'
    assert front['license'] == 'mit'
    assert front['datasets'] == ['zalando-datasets/fashion_mnist']
    assert front['metrics'] == ['accuracy']
    assert {'timm', 'image-classification', 'delugenet'} <= set(front['tags'])
    result = front['model-index'][0]['results'][0]
    assert result['metrics'][0]['value'] == 87.65


def _count_macs_with_hooks(model: nn.Module, input_size) -> int:
    # Train mode calls every convolution module. Eval mode folds BatchNorm into functional convolutions.
    macs = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.numel() * kernel)
        else:
            macs.append(output.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.train()
    with torch.no_grad():
        model(torch.zeros(1, *input_size))
    model.eval()
    for handle in handles:
        handle.remove()
    return sum(macs)


def test_card_body_facts(published, fmnist):
    text = (published / 'README.md').read_text()
    model = timm.create_model(ARCH, num_classes=10, in_chans=1)
    params = sum(p.numel() for p in model.parameters())
    macs = _count_macs_with_hooks(model, (1, 28, 28))
    assert f'{params:,}' in text
    assert f'**GMACs:** {macs / 1e9:.4f}' in text
    assert '28 x 28, 1 channel' in text
    assert '| `lr` | `0.1` |' in text
    assert '| `epochs` | `3` |' in text
    assert '87.65' in text
    assert 'hand-written test value' in text
    assert f"timm.create_model('hf-hub:{FMNIST_REPO}', pretrained=True)" in text
    assert 'features_only=True' in text
    assert '@article{kuen2016delugenets' in text
    assert 'arXiv:1611.05552' in text


def test_publish_ema_weights(fmnist, tmp_path):
    folder = publish(PublishRequest(checkpoint=fmnist['checkpoint'], tag='fmnist', use_ema=True, out=tmp_path / 'o'))
    tensors = safetensors.torch.load_file(folder / 'model.safetensors')
    ema, raw = fmnist['ema'].state_dict(), fmnist['model'].state_dict()
    key = 'head.fc.weight'
    assert torch.equal(tensors[key], ema[key])
    assert not torch.equal(tensors[key], raw[key])
    assert '`state_dict_ema` of `last.pth.tar`' in (folder / 'README.md').read_text()


def test_publish_keeps_existing_folder(published, fmnist):
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    with pytest.raises(FileExistsError, match='--overwrite'):
        publish(PublishRequest(checkpoint=fmnist['checkpoint'], tag='fmnist', out=published))
    assert {p.name: p.read_bytes() for p in published.iterdir()} == before


def test_publish_overwrite_replaces(fmnist, tmp_path):
    out = tmp_path / 'o'
    out.mkdir()
    (out / 'stale.txt').write_text('old')
    publish(PublishRequest(checkpoint=fmnist['checkpoint'], tag='fmnist', out=out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']


def test_repo_name_per_tag(fmnist, tmp_path):
    request = PublishRequest(checkpoint=fmnist['checkpoint'], tag='fmnist', org='someone', model_name=ARCH)
    assert request.repo_id == f'someone/{ARCH}.fmnist'
    default_out = tmp_path / 'cwd'
    default_out.mkdir()
    cwd = os.getcwd()
    os.chdir(default_out)
    try:
        folder = publish(PublishRequest(checkpoint=fmnist['checkpoint'], tag='fmnist', org='someone'))
    finally:
        os.chdir(cwd)
    assert folder == Path('hub_models') / 'someone' / f'{ARCH}.fmnist'


# The local Hugging Face cache.

def test_cache_layout(hub_cache, published):
    repo_dir = hub_cache / f"models--{FMNIST_REPO.replace('/', '--')}"
    commit = (repo_dir / 'refs' / 'main').read_text()
    snapshot = repo_dir / 'snapshots' / commit
    assert len(commit) == 40
    assert snapshot.is_dir()
    weights = snapshot / 'model.safetensors'
    assert weights.is_symlink()
    sha256 = hashlib.sha256((published / 'model.safetensors').read_bytes()).hexdigest()
    assert weights.resolve() == (repo_dir / 'blobs' / sha256).resolve()
    config_bytes = (published / 'config.json').read_bytes()
    git_sha1 = hashlib.sha1(b'blob %d\0' % len(config_bytes) + config_bytes).hexdigest()
    assert (repo_dir / 'blobs' / git_sha1).read_bytes() == config_bytes


def test_cache_hf_hub_download(hub_cache, published):
    path = huggingface_hub.hf_hub_download(FMNIST_REPO, 'config.json')
    assert Path(path).read_bytes() == (published / 'config.json').read_bytes()


# Loading the published weights through every timm source.

def test_load_hf_hub_name(hub_cache, fmnist):
    model = timm.create_model(f'hf-hub:{FMNIST_REPO}', pretrained=True)
    assert model.pretrained_cfg['hf_hub_id'] == FMNIST_REPO
    assert torch.equal(_outputs(model, 1), _outputs(fmnist['model'], 1))


def test_load_hf_hub_id_cfg(hub_cache, fmnist):
    # The configuration a default_cfgs entry gives once these weights are on the Hub.
    overlay = dict(hf_hub_id=FMNIST_REPO, num_classes=10, input_size=(1, 28, 28), mean=FMNIST_MEAN, std=FMNIST_STD)
    model = timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, in_chans=1)
    assert torch.equal(_outputs(model, 1), _outputs(fmnist['model'], 1))


def test_load_local_dir(published, fmnist):
    model = timm.create_model(f'local-dir:{published}', pretrained=True)
    assert torch.equal(_outputs(model, 1), _outputs(fmnist['model'], 1))


def test_load_overlay_file(published, fmnist):
    overlay = dict(file=str(published / 'model.safetensors'), num_classes=10, input_size=(1, 28, 28))
    model = timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, in_chans=1)
    assert torch.equal(_outputs(model, 1), _outputs(fmnist['model'], 1))


def test_load_checkpoint_path(published, fmnist):
    model = timm.create_model(
        ARCH, num_classes=10, in_chans=1, checkpoint_path=str(published / 'model.safetensors'))
    assert torch.equal(_outputs(model, 1), _outputs(fmnist['model'], 1))


def test_load_features_only(hub_cache, fmnist):
    model = timm.create_model(f'hf-hub:{FMNIST_REPO}', pretrained=True, features_only=True).eval()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model(x)
        expected = fmnist['model'].forward_intermediates(x, intermediates_only=True)
    assert len(features) == len(expected) == 4
    for feature, reference in zip(features, expected):
        assert torch.equal(feature, reference)


def test_load_new_num_classes(hub_cache, fmnist):
    model = timm.create_model(f'hf-hub:{FMNIST_REPO}', pretrained=True, num_classes=5).eval()
    assert model.head.fc.out_features == 5
    source = fmnist['model'].state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith('head.fc.'):
            assert torch.equal(value, source[key]), key
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), fmnist['model'].forward_features(x))


def test_load_in_chans_1(hub_cache, cifar):
    # One grey channel replaces three equal ones, so the adapted kernel is the sum over input channels.
    model = timm.create_model(f'hf-hub:{CIFAR_REPO}', pretrained=True, in_chans=1).eval()
    source_weight = cifar['model'].stem.conv.weight
    assert model.stem.conv.weight.shape == (source_weight.shape[0], 1, 3, 3)
    torch.testing.assert_close(model.stem.conv.weight, source_weight.sum(dim=1, keepdim=True))
    grey = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(grey), cifar['model'](grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_checkpoint_path_truncated_raises(published, tmp_path):
    # timm's load_checkpoint reads checkpoint_path after the model is built, so the message is safetensors'.
    weights = tmp_path / 'model.safetensors'
    weights.write_bytes((published / 'model.safetensors').read_bytes()[:1000])
    with pytest.raises(Exception, match='deserializing header'):
        timm.create_model(ARCH, num_classes=10, in_chans=1, checkpoint_path=str(weights))


# Accuracy measured by the publishing tool on real Fashion-MNIST test images.

FMNIST_DIR = Path('/usr/share/datasets/fashion-mnist')  # Debian package dataset-fashion-mnist


def _read_fmnist_test(count: int):
    with gzip.open(FMNIST_DIR / 't10k-images-idx3-ubyte.gz', 'rb') as f:
        images = f.read()[16:16 + count * 28 * 28]
    with gzip.open(FMNIST_DIR / 't10k-labels-idx1-ubyte.gz', 'rb') as f:
        labels = f.read()[8:8 + count]
    return torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(count, 28, 28), list(labels)


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason='needs Debian package dataset-fashion-mnist')
def test_publish_measures_accuracy(fmnist, tmp_path):
    images, labels = _read_fmnist_test(40)
    for i, (image, label) in enumerate(zip(images, labels)):
        class_dir = tmp_path / 'data' / 'test' / f'class_{label}'
        class_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(class_dir / f'{i:03d}.png')

    # Image folders number the classes in sorted folder order, so folder class_k gets index k when all ten occur.
    assert sorted(set(labels)) == list(range(10))

    # Independent computation: normalise by hand and count correct predictions of the source model.
    x = (images.float().unsqueeze(1) / 255 - FMNIST_MEAN[0]) / FMNIST_STD[0]
    with torch.no_grad():
        predictions = fmnist['model'](x).argmax(dim=1)
    expected_top1 = 100 * (predictions == torch.tensor(labels)).float().mean().item()

    folder = publish(PublishRequest(
        checkpoint=fmnist['checkpoint'], tag='fmnist', out=tmp_path / 'o', datasets=['zalando-datasets/fashion_mnist'],
        eval_data_dir=str(tmp_path / 'data'), eval_timm_dataset='', eval_split='test'))
    front = yaml.safe_load((folder / 'README.md').read_text().split('---\n')[1])
    measured = front['model-index'][0]['results'][0]['metrics'][0]['value']
    assert measured == pytest.approx(expected_top1, abs=0.01)
    assert 'test (40 images)' in (folder / 'README.md').read_text()


# The main job: a real Fashion-MNIST training checkpoint, published, cached and measured again.

@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get('TIMM_DELUGE_FMNIST_CHECKPOINT'),
    reason='set TIMM_DELUGE_FMNIST_CHECKPOINT to a model_best.pth.tar of train_configs/fashion_mnist_quick.yaml')
def test_fmnist_round_trip_accuracy(offline_cache, tmp_path):
    import csv

    from hub.evaluate import evaluate_model
    from timm_deluge.data import prepare_fashion_mnist

    checkpoint = Path(os.environ['TIMM_DELUGE_FMNIST_CHECKPOINT'])
    epoch = read_checkpoint(checkpoint).epoch
    # The trainer's own evaluation of the raw weights at that epoch, on the 10,000 test images.
    with open(checkpoint.parent / 'summary.csv') as f:
        row = next(r for r in csv.DictReader(f) if int(r['epoch']) == epoch)
    data_root = prepare_fashion_mnist(tmp_path / 'data')

    repo_id = f'{ORG}/{ARCH}.fmnist_real'
    folder = publish(PublishRequest(
        checkpoint=checkpoint, tag='fmnist_real', org=ORG, out=tmp_path / 'hub', eval_data_dir=str(data_root)))
    add_to_hf_cache(folder, repo_id, cache_dir=offline_cache)
    model = timm.create_model(f'hf-hub:{repo_id}', pretrained=True)
    results = evaluate_model(model, str(data_root), dataset='torch/fashion_mnist', split='test')

    assert results['num_images'] == 10000
    assert results['top1'] == pytest.approx(float(row['eval_top1']), abs=0.005)
    assert results['top5'] == pytest.approx(float(row['eval_top5']), abs=0.005)
    front = yaml.safe_load((folder / 'README.md').read_text().split('---\n')[1])
    assert front['model-index'][0]['results'][0]['metrics'][0]['value'] == round(results['top1'], 2)


# No published weights.

def test_registry_names_no_weights():
    assert timm.list_models('delugenet*', pretrained=True) == []


@pytest.mark.parametrize('name', [f'{ARCH}', f'{ARCH}.cifar10', 'delugenet_122', 'delugenet_baseline_56_1x1_cifar'])
def test_pretrained_unpublished_raises(name):
    with pytest.raises(RuntimeError, match='No pretrained weights are published') as info:
        timm.create_model(name, pretrained=True)
    message = str(info.value)
    assert name.split('.')[0] in message
    assert 'train_configs/' in message
    # A recipe named in the message exists in this repository.
    for recipe in re.findall(r'train_configs/[\w.]+\.yaml', message):
        assert (REPO_ROOT / recipe).is_file(), recipe


def test_pretrained_error_names_recipe():
    with pytest.raises(RuntimeError, match=r'train_configs/delugenet_56_cifar_cifar10\.yaml'):
        timm.create_model(f'{ARCH}.cifar10', pretrained=True)


# Bad weight files on the load path.

def test_load_truncated_file(published, tmp_path):
    folder = _copy_folder(published, tmp_path)
    weights = folder / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    with pytest.raises(RuntimeError, match='deserializing header') as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert str(weights) in str(info.value)


def test_load_corrupted_file(published, tmp_path):
    weights = tmp_path / 'model.safetensors'
    data = bytearray((published / 'model.safetensors').read_bytes())
    data[:8] = b'\xff' * 8  # the header length, now larger than the file
    weights.write_bytes(bytes(data))
    overlay = dict(file=str(weights), num_classes=10, input_size=(1, 28, 28))
    with pytest.raises(RuntimeError, match='deserializing header') as info:
        timm.create_model(ARCH, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, in_chans=1)
    assert str(weights) in str(info.value)


def test_load_truncated_cached_blob(published, offline_cache, tmp_path):
    folder = _copy_folder(published, tmp_path)
    weights = folder / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:100])
    repo_id = f'{ORG}/{ARCH}.truncated'
    snapshot = add_to_hf_cache(folder, repo_id, cache_dir=offline_cache)
    with pytest.raises(RuntimeError, match='deserializing header') as info:
        timm.create_model(f'hf-hub:{repo_id}', pretrained=True)
    assert str(snapshot / 'model.safetensors') in str(info.value)
    assert repo_id in str(info.value)


def test_load_other_architecture(published, tmp_path):
    folder = _copy_folder(published, tmp_path)
    other = timm.create_model('delugenet_baseline_56_1x1_cifar', num_classes=10, in_chans=1)
    safetensors.torch.save_file(other.state_dict(), folder / 'model.safetensors')
    with pytest.raises(RuntimeError, match='Missing key') as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert str(folder / 'model.safetensors') in str(info.value)
    assert 'Unexpected key' in str(info.value)


def test_load_missing_key(published, tmp_path):
    folder = _copy_folder(published, tmp_path)
    tensors = safetensors.torch.load_file(folder / 'model.safetensors')
    del tensors['stages.1.cldc.weight']
    safetensors.torch.save_file(tensors, folder / 'model.safetensors')
    with pytest.raises(RuntimeError, match=r'Missing key.*stages\.1\.cldc\.weight') as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert str(folder / 'model.safetensors') in str(info.value)


def test_load_unexpected_key(published, tmp_path):
    folder = _copy_folder(published, tmp_path)
    tensors = safetensors.torch.load_file(folder / 'model.safetensors')
    tensors['head.extra.weight'] = torch.zeros(3)
    safetensors.torch.save_file(tensors, folder / 'model.safetensors')
    with pytest.raises(RuntimeError, match=r'Unexpected key.*head\.extra\.weight') as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert str(folder / 'model.safetensors') in str(info.value)


# Bad checkpoints given to the publishing tool.

def test_publish_truncated_checkpoint(fmnist, tmp_path):
    checkpoint = tmp_path / 'last.pth.tar'
    data = fmnist['checkpoint'].read_bytes()
    checkpoint.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupted') as info:
        publish(PublishRequest(checkpoint=checkpoint, tag='fmnist', out=tmp_path / 'o'))
    assert str(checkpoint) in str(info.value)
    assert not (tmp_path / 'o').exists()


def test_publish_corrupted_safetensors(published, tmp_path):
    weights = tmp_path / 'model.safetensors'
    weights.write_bytes(b'not a safetensors file at all')
    with pytest.raises(CheckpointError, match='truncated or corrupted') as info:
        publish(PublishRequest(checkpoint=weights, tag='fmnist', model_name=ARCH, out=tmp_path / 'o'))
    assert str(weights) in str(info.value)


def test_publish_other_arch_recorded(tmp_path):
    model = timm.create_model('resnet10t', num_classes=10)
    args = argparse.Namespace(model='resnet10t')
    saver = CheckpointSaver(model, torch.optim.SGD(model.parameters(), lr=0.1), args=args, checkpoint_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0)
    checkpoint = tmp_path / 'last.pth.tar'
    with pytest.raises(CheckpointError, match="records the architecture 'resnet10t'") as info:
        publish(PublishRequest(checkpoint=checkpoint, tag='fmnist', out=tmp_path / 'o'))
    assert str(checkpoint) in str(info.value)
    with pytest.raises(CheckpointError, match="'resnet10t', but --model is 'delugenet_56_cifar'"):
        publish(PublishRequest(checkpoint=checkpoint, tag='fmnist', model_name=ARCH, out=tmp_path / 'o'))


def test_publish_shape_mismatch(tmp_path):
    weights = tmp_path / 'weights.pth'
    torch.save(timm.create_model(ARCH, num_classes=10).state_dict(), weights)
    with pytest.raises(CheckpointError, match='do not match delugenet_146_cifar') as info:
        publish(PublishRequest(checkpoint=weights, tag='cifar10', model_name='delugenet_146_cifar', out=tmp_path / 'o'))
    message = str(info.value)
    assert str(weights) in message
    assert 'stem.conv.weight (16, 3, 3, 3) in the file, (32, 3, 3, 3) in the model' in message
    assert 'missing keys' in message


def test_publish_missing_unexpected_keys(tmp_path):
    state_dict = timm.create_model(ARCH, num_classes=10).state_dict()
    del state_dict['norm.weight']
    state_dict['norm.extra'] = torch.zeros(1)
    weights = tmp_path / 'weights.safetensors'
    safetensors.torch.save_file(state_dict, weights)
    with pytest.raises(CheckpointError) as info:
        publish(PublishRequest(checkpoint=weights, tag='cifar10', model_name=ARCH, out=tmp_path / 'o'))
    message = str(info.value)
    assert str(weights) in message
    assert '1 missing keys (norm.weight)' in message
    assert '1 unexpected keys (norm.extra)' in message


class _Payload:
    """A pickled object that weights_only loading must reject without constructing it."""

    constructed = False

    def __setstate__(self, state):
        _Payload.constructed = True


def test_publish_rejects_pickled_objects(tmp_path):
    checkpoint = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': timm.create_model(ARCH).state_dict(), 'extra': _Payload()}, checkpoint)
    with pytest.raises(CheckpointError, match='weights_only=True') as info:
        read_checkpoint(checkpoint)
    assert str(checkpoint) in str(info.value)
    assert '_Payload' in str(info.value)
    assert not _Payload.constructed


def test_publish_ema_missing(tmp_path):
    weights = tmp_path / 'weights.pth'
    torch.save(timm.create_model(ARCH).state_dict(), weights)
    with pytest.raises(CheckpointError, match='without EMA weights'):
        publish(PublishRequest(checkpoint=weights, tag='cifar100', model_name=ARCH, use_ema=True, out=tmp_path / 'o'))


def test_publish_mean_channels_mismatch(tmp_path):
    # A 1-channel model whose checkpoint stores no normalisation would get the 3-channel CIFAR-100 mean.
    weights = tmp_path / 'weights.pth'
    torch.save(timm.create_model(ARCH, in_chans=1, num_classes=10).state_dict(), weights)
    with pytest.raises(ValueError, match='Pass --mean with 1 value'):
        publish(PublishRequest(checkpoint=weights, tag='fmnist', model_name=ARCH, out=tmp_path / 'o'))
    assert not (tmp_path / 'o').exists()


# The command line and --push.

class _RecordingHub(http.server.BaseHTTPRequestHandler):
    """Loopback stand-in for the Hub API: records each request and rejects the upload itself with 400."""

    requests = []

    def _handle(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        self.requests.append((self.command, self.path, body, self.headers.get('user-agent', '')))
        if self.path == '/api/repos/create':
            name = json.loads(body)['name']
            organization = json.loads(body).get('organization')
            response = json.dumps({'url': f'http://{self.headers["Host"]}/{organization}/{name}'}).encode()
            self.send_response(200)
        elif self.path == '/api/validate-yaml':
            response = b'{"errors": [], "warnings": []}'
            self.send_response(200)
        else:
            # 400 rather than a 5xx, which huggingface_hub retries with backoff.
            response = b'{"error": "the test server accepts no uploads"}'
            self.send_response(400)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    do_GET = do_POST = do_PUT = do_HEAD = _handle

    def log_message(self, *args):
        pass


@pytest.fixture()
def recording_hub(monkeypatch):
    _RecordingHub.requests = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RecordingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f'http://127.0.0.1:{server.server_address[1]}'
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(hf_constants, 'ENDPOINT', endpoint)
    yield endpoint, _RecordingHub.requests
    server.shutdown()
    server.server_close()


def test_cli_without_push_stays_local(fmnist, tmp_path, recording_hub):
    endpoint, requests = recording_hub
    out = tmp_path / 'o'
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE='0', PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, '-m', 'hub.publish', str(fmnist['checkpoint']), '--tag', 'fmnist', '--out', str(out),
         '--dataset', 'zalando-datasets/fashion_mnist'],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'Not pushed' in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    assert requests == []


def test_cli_results_file_card(fmnist, tmp_path):
    # The results format of timm's validate.py: a list with one entry per model, without a method.
    results = tmp_path / 'results.json'
    results.write_text(json.dumps([{'model': ARCH, 'top1': 91.25, 'top5': 99.75, 'img_size': 28}]))
    out = tmp_path / 'o'
    argv = [str(fmnist['checkpoint']), '--tag', 'fmnist', '--out', str(out), '--results', str(results),
            '--eval-dataset', 'zalando-datasets/fashion_mnist', '--eval-method', 'validate.py on the test split']
    assert publish_main(argv) == 0
    text = (out / 'README.md').read_text()
    assert '| zalando-datasets/fashion_mnist | test | 91.25 | 99.75 |' in text
    assert 'Measured by: validate.py on the test split' in text


def test_cli_results_need_method(fmnist, tmp_path):
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'top1': 91.25}))
    with pytest.raises(ValueError, match='--eval-method'):
        publish_main([str(fmnist['checkpoint']), '--tag', 'fmnist', '--results', str(results)])


def test_push_targets_repo(published, recording_hub):
    _, requests = recording_hub
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        push_folder(published, FMNIST_REPO, token='hf_test_token_not_real')
    creates = [r for r in requests if r[1] == '/api/repos/create']
    assert len(creates) == 1, [r[:2] for r in requests]
    method, path, body, user_agent = creates[0]
    assert json.loads(body)['name'] == f'{ARCH}.fmnist'
    assert json.loads(body)['organization'] == ORG
    assert 'timm/' in user_agent
    # The upload that follows goes to the same repo, with exactly the published files.
    preuploads = [r for r in requests if r[1] == f'/api/models/{FMNIST_REPO}/preupload/main']
    assert len(preuploads) == 1, [r[:2] for r in requests]
    uploaded = {f['path'] for f in json.loads(preuploads[0][2])['files']}
    assert uploaded == {'README.md', 'config.json', 'model.safetensors'}
