"""Shared fixtures: real images written as datasets in temporary folders."""
import importlib.util
import re
from pathlib import Path

import pytest

CIFAR10_CLASSES = (
    'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def foolbox_data_dir() -> Path:
    """Return foolbox's data folder without importing foolbox, or skip when foolbox 3.3.4 is not installed."""
    spec = importlib.util.find_spec('foolbox')
    if spec is None or not spec.submodule_search_locations:
        pytest.skip('needs the 20 real CIFAR-10 images of foolbox: pip install --no-deps foolbox==3.3.4')
    return Path(list(spec.submodule_search_locations)[0]) / 'data'


@pytest.fixture(scope='session')
def cifar10_folder(tmp_path_factory) -> Path:
    """The 20 CIFAR-10 test images shipped with foolbox, as an ImageFolder root.

    Both ``train/`` and ``validation/`` contain all 20 images in class folders named after the CIFAR-10 classes.
    foolbox names each file ``cifar10_INDEX_LABEL.png``.
    """
    images = sorted(foolbox_data_dir().glob('cifar10_*.png'))
    assert len(images) == 20, f'expected 20 CIFAR-10 images in foolbox, found {len(images)}'
    root = tmp_path_factory.mktemp('cifar10_folder')
    for split in ('train', 'validation'):
        for image in images:
            label = int(re.fullmatch(r'cifar10_\d+_(\d+)\.png', image.name).group(1))
            class_dir = root / split / CIFAR10_CLASSES[label]
            class_dir.mkdir(parents=True, exist_ok=True)
            (class_dir / image.name).write_bytes(image.read_bytes())
    return root
