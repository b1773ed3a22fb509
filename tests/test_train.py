"""timm_deluge.train and timm_deluge.data on real images: a few steps, the outputs, resuming."""
import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from timm.data import create_dataset

from timm_deluge.data import DEBIAN_FASHION_MNIST_DIR, find_debian_fashion_mnist, prepare_fashion_mnist
from timm_deluge.train import parse_args, train

# A tiny recipe on the 20 CIFAR-10 images: no augmentation and a constant lr, so that the model fits the images
# and the training loss falls within a few steps.
TINY_RECIPE = dict(
    dataset='',
    train_split='train',
    val_split='validation',
    model='delugenet_56_cifar.cifar10',
    num_classes=10,
    input_size=[3, 32, 32],
    batch_size=10,
    opt='sgd',
    opt_kwargs={'nesterov': True, 'filter_bias_and_bn': False},
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-4,
    sched='step',
    decay_epochs=100,
    warmup_epochs=0,
    no_aug=True,
    smoothing=0.0,
    model_ema=True,
    model_ema_decay=0.9,
    seed=0,
    workers=0,
    checkpoint_hist=2,
)


def _write_recipe(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / 'recipe.yaml'
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **overrides}))
    return path


def _run(recipe: Path, data_dir: Path, output: Path, *extra: str) -> dict:
    argv = ['--config', str(recipe), '--data-dir', str(data_dir), '--output', str(output), '--no-progress', *extra]
    return train(parse_args(argv))


def _summary(output: Path) -> list:
    with open(output / 'summary.csv') as f:
        return list(csv.DictReader(f))


def test_train_loss_falls(tmp_path, cifar10_folder):
    output = tmp_path / 'run'
    result = _run(_write_recipe(tmp_path), cifar10_folder, output, '--epochs', '4')

    rows = _summary(output)
    assert [int(r['epoch']) for r in rows] == [0, 1, 2, 3]
    assert float(rows[-1]['train_loss']) < float(rows[0]['train_loss'])
    assert float(rows[-1]['eval_loss']) < float(rows[0]['eval_loss'])
    assert 'eval_ema_top1' in rows[0]
    for name in ('args.yaml', 'last.pth.tar', 'model_best.pth.tar'):
        assert (output / name).is_file(), name
    # checkpoint_hist=2 keeps the two best epochs.
    assert len(list(output.glob('checkpoint-*.pth.tar'))) == 2
    args = yaml.safe_load((output / 'args.yaml').read_text())
    assert args['model'] == 'delugenet_56_cifar.cifar10'
    assert args['epochs'] == 4
    assert result['best_checkpoint'] == str(output / 'model_best.pth.tar')
    assert 0 <= result['test']['top1'] <= 100


def test_train_resume(tmp_path, cifar10_folder):
    recipe = _write_recipe(tmp_path, epochs=3)
    output = tmp_path / 'run'
    _run(recipe, cifar10_folder, output, '--epochs', '2')
    first = torch.load(output / 'last.pth.tar', map_location='cpu', weights_only=False)

    _run(recipe, cifar10_folder, output, '--resume', str(output / 'last.pth.tar'))

    rows = _summary(output)
    assert [int(r['epoch']) for r in rows] == [0, 1, 2]
    resumed = torch.load(output / 'last.pth.tar', map_location='cpu', weights_only=False)
    assert first['epoch'] == 1
    assert resumed['epoch'] == 2
    # The optimizer state continues: momentum buffers exist from the first run and have changed since.
    key = next(iter(first['optimizer']['state']))
    assert not torch.equal(first['optimizer']['state'][key]['momentum_buffer'],
                           resumed['optimizer']['state'][key]['momentum_buffer'])


def test_train_rejects_used_output(tmp_path, cifar10_folder):
    output = tmp_path / 'run'
    output.mkdir()
    (output / 'last.pth.tar').write_bytes(b'')

    with pytest.raises(FileExistsError, match='--resume'):
        _run(_write_recipe(tmp_path), cifar10_folder, output)
    assert (output / 'last.pth.tar').read_bytes() == b''


def test_train_rejects_unknown_key(tmp_path, cifar10_folder):
    with pytest.raises(ValueError, match='mixup'):
        _run(_write_recipe(tmp_path, mixup=0.2), cifar10_folder, tmp_path / 'run')


def _write_idx(path: Path, magic: int, items: np.ndarray) -> None:
    header = magic.to_bytes(4, 'big') + len(items).to_bytes(4, 'big')
    if items.ndim == 3:
        header += items.shape[1].to_bytes(4, 'big') + items.shape[2].to_bytes(4, 'big')
    with gzip.open(path, 'wb') as f:
        f.write(header + items.astype(np.uint8).tobytes())


def test_prepare_fashion_mnist_subset(tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28))
    labels = np.arange(7) % 10
    for split in ('train', 't10k'):
        _write_idx(source / f'{split}-images-idx3-ubyte.gz', 2051, images)
        _write_idx(source / f'{split}-labels-idx1-ubyte.gz', 2049, labels)

    root = prepare_fashion_mnist(tmp_path / 'root', train_samples=4, source_dir=source, download=False)

    train_ds = create_dataset('torch/fashion_mnist', root=str(root), split='train')
    test_ds = create_dataset('torch/fashion_mnist', root=str(root), split='test')
    assert len(train_ds) == 4
    assert len(test_ds) == 7
    assert np.array_equal(np.asarray(train_ds[3][0]), images[3])
    assert train_ds[3][1] == labels[3]
    with pytest.raises(FileExistsError, match='train_samples=4'):
        prepare_fashion_mnist(root, train_samples=5, source_dir=source, download=False)


def test_prepare_fashion_mnist_debian(tmp_path):
    if find_debian_fashion_mnist() is None:
        pytest.skip('needs Debian\'s dataset-fashion-mnist: apt-get install -y dataset-fashion-mnist')
    root = prepare_fashion_mnist(tmp_path / 'root', download=False)

    test_ds = create_dataset('torch/fashion_mnist', root=str(root), split='test')
    with gzip.open(DEBIAN_FASHION_MNIST_DIR / 't10k-labels-idx1-ubyte.gz') as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
    assert len(test_ds) == 10000
    assert len(create_dataset('torch/fashion_mnist', root=str(root), split='train')) == 60000
    assert test_ds[9999][1] == labels[9999]
    assert np.bincount(labels).tolist() == [1000] * 10
