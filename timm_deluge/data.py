"""Locating and preparing real datasets for training DelugeNets with timm.

Fashion-MNIST is prepared in the folder layout of ``torchvision.datasets.FashionMNIST`` (``ROOT/FashionMNIST/raw``
with the four uncompressed IDX files), which timm's ``create_dataset('torch/fashion_mnist', root=ROOT)`` and
therefore timm's ``train.py --dataset torch/fashion_mnist --data-dir ROOT`` read without a download. The files come
from Debian's ``dataset-fashion-mnist`` package when it is installed; elsewhere torchvision downloads them.

Command line::

    python -m timm_deluge.data fashion-mnist ROOT [--train-samples N]
"""
import argparse
import gzip
import json
import logging
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from timm_deluge._files import atomic_path

__all__ = [
    'DEBIAN_FASHION_MNIST_DIR', 'FASHION_MNIST_FILES', 'find_debian_fashion_mnist', 'prepare_fashion_mnist',
    'default_data_root',
]

_logger = logging.getLogger(__name__)

# Installed by Debian's dataset-fashion-mnist package (`dpkg -L dataset-fashion-mnist`).
DEBIAN_FASHION_MNIST_DIR = Path('/usr/share/datasets/fashion-mnist')

FASHION_MNIST_FILES = (
    'train-images-idx3-ubyte',
    'train-labels-idx1-ubyte',
    't10k-images-idx3-ubyte',
    't10k-labels-idx1-ubyte',
)

# IDX headers: magic number, item count, then rows and columns for image files (big-endian int32 each).
_IMAGE_HEADER_BYTES = 16
_LABEL_HEADER_BYTES = 8
_IMAGE_BYTES = 28 * 28
_SUBSET_RECORD = 'timm_deluge_subset.json'


def default_data_root() -> Path:
    """Return the folder for prepared datasets: ``$TIMM_DELUGE_DATA`` or ``~/.cache/timm_deluge/data``."""
    env = os.environ.get('TIMM_DELUGE_DATA')
    if env:
        return Path(env).expanduser()
    return Path('~/.cache/timm_deluge/data').expanduser()


def find_debian_fashion_mnist(search_dirs: Optional[Sequence[Union[str, Path]]] = None) -> Optional[Path]:
    """Find a folder that contains all four gzipped Fashion-MNIST IDX files.

    Args:
        search_dirs: Folders to check, in order. Defaults to Debian's install folder.

    Returns:
        The first folder that contains every file, or None.
    """
    for folder in search_dirs or (DEBIAN_FASHION_MNIST_DIR,):
        folder = Path(folder)
        if all((folder / f'{name}.gz').is_file() for name in FASHION_MNIST_FILES):
            return folder
    return None


def _write_atomic(path: Path, chunks: List[bytes]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open('wb') as f:
            for chunk in chunks:
                f.write(chunk)


def _truncate_idx(data: bytes, header_bytes: int, item_bytes: int, num_items: int) -> bytes:
    """Return an IDX file that keeps only the first ``num_items`` items, with the item count rewritten."""
    count = int.from_bytes(data[4:8], 'big')
    if num_items > count:
        raise ValueError(f'train_samples={num_items} is more than the {count} items in the file. Use at most {count}.')
    return data[:4] + num_items.to_bytes(4, 'big') + data[8:header_bytes] + \
        data[header_bytes:header_bytes + num_items * item_bytes]


def _read_subset_record(raw_dir: Path) -> Optional[dict]:
    record = raw_dir / _SUBSET_RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text())


def prepare_fashion_mnist(
        root: Union[str, Path],
        train_samples: Optional[int] = None,
        source_dir: Optional[Union[str, Path]] = None,
        download: bool = True,
) -> Path:
    """Write Fashion-MNIST under ``root`` in the layout that torchvision's ``FashionMNIST`` reads.

    The files are copied from ``source_dir`` or from Debian's ``dataset-fashion-mnist``. When neither exists and
    ``download`` is set, torchvision downloads them. A prepared root is reused as it is, but only when it was
    prepared with the same ``train_samples``.

    Args:
        root: Dataset root, passed later as ``--data-dir`` or ``root``.
        train_samples: Keep only the first N of the 60,000 training images (the test split always has all 10,000).
            None keeps all.
        source_dir: Folder with the four ``*-ubyte.gz`` files. Defaults to the Debian package folder.
        download: Download with torchvision when no local copy exists.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root).expanduser()
    raw_dir = root / 'FashionMNIST' / 'raw'
    requested = {'train_samples': train_samples}
    if all((raw_dir / name).is_file() for name in FASHION_MNIST_FILES):
        found = _read_subset_record(raw_dir) or {'train_samples': None}
        if found != requested:
            raise FileExistsError(
                f'{raw_dir} already contains Fashion-MNIST prepared with train_samples={found["train_samples"]}, '
                f'not {train_samples}. Use another root folder or delete this one.')
        return root

    raw_dir.mkdir(parents=True, exist_ok=True)
    source = find_debian_fashion_mnist([source_dir] if source_dir else None)
    if source is not None:
        _logger.info(f'Preparing Fashion-MNIST in {root} from {source}')
        for name in FASHION_MNIST_FILES:
            with gzip.open(source / f'{name}.gz', 'rb') as f:
                data = f.read()
            if train_samples is not None and name.startswith('train-'):
                if 'images' in name:
                    data = _truncate_idx(data, _IMAGE_HEADER_BYTES, _IMAGE_BYTES, train_samples)
                else:
                    data = _truncate_idx(data, _LABEL_HEADER_BYTES, 1, train_samples)
            _write_atomic(raw_dir / name, [data])
    elif download:
        if train_samples is not None:
            raise ValueError(
                'train_samples needs a local copy of the gzipped IDX files, but none was found. Install Debian\'s '
                'dataset-fashion-mnist or pass source_dir.')
        from torchvision.datasets import FashionMNIST
        _logger.info(f'Downloading Fashion-MNIST to {root} with torchvision')
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    else:
        raise FileNotFoundError(
            f'Fashion-MNIST not found in {DEBIAN_FASHION_MNIST_DIR} or {root}. Install Debian\'s '
            f'dataset-fashion-mnist, pass source_dir, or allow the torchvision download.')

    _write_atomic(raw_dir / _SUBSET_RECORD, [json.dumps(requested).encode()])
    return root


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog='python -m timm_deluge.data',
        description='Prepare a dataset for timm\'s train.py (--dataset torch/fashion_mnist --data-dir ROOT).')
    sub = parser.add_subparsers(dest='dataset', required=True)
    fmnist = sub.add_parser('fashion-mnist', help='Fashion-MNIST in the torchvision folder layout.')
    fmnist.add_argument('root', help='Folder to write the dataset to.')
    fmnist.add_argument(
        '--train-samples', type=int, default=None, help='Keep only the first N training images (default: all).')
    fmnist.add_argument(
        '--no-download', action='store_true', help='Raise an error instead of downloading when no local copy exists.')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    root = prepare_fashion_mnist(args.root, train_samples=args.train_samples, download=not args.no_download)
    print(root)


if __name__ == '__main__':
    main()
