"""Measure the top-1 and top-5 accuracy of a timm model on a labelled evaluation split.

The data pipeline is timm's: ``create_dataset`` reads the split (an image folder, or a ``torch/`` dataset)
and ``create_loader`` applies the eval transform of the model's own data configuration. That configuration
is the one ``config.json`` publishes, so the number measures what a user of the published weights gets.
The output JSON has the keys of timm ``validate.py``'s results file, plus ``dataset``, ``split`` and
``method`` for the model card.

Example::

    HF_HUB_OFFLINE=1 python -m hub.evaluate hf-hub:timm-deluge/delugenet_56_cifar.fmnist \\
        --data-dir /data/fashion_mnist --split test --results-file results.json
"""
import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import timm
import torch
import torch.nn as nn
from timm.data import create_dataset, create_loader, resolve_data_config
from timm.utils import accuracy

import timm_deluge  # noqa: F401  registers the delugenet_* models

from timm_deluge._files import atomic_path

__all__ = ['evaluate_model', 'main']

_logger = logging.getLogger(__name__)


def evaluate_model(
        model: nn.Module,
        data_dir: str,
        dataset: str = '',
        split: str = 'test',
        batch_size: int = 250,
        workers: int = 1,
        model_label: Optional[str] = None,
        command: str = 'python -m hub.evaluate',
) -> Dict[str, Any]:
    """Evaluate a classifier on a split with the eval transform of its data configuration.

    Args:
        model: Classifier, put in eval mode here.
        data_dir: Dataset root: a folder containing ``<split>/<class>/<image>``, or a ``torch/`` dataset root.
        dataset: timm dataset name: '' for an image folder, e.g. 'torch/fashion_mnist' for torchvision's.
        split: Split folder or name.
        batch_size: Images per batch.
        workers: DataLoader worker processes.
        model_label: Model name to report, e.g. the ``hf-hub:`` name it was created from.
        command: Command that ran the evaluation, for the ``method`` sentence.

    Returns:
        ``top1`` and ``top5`` in percent, ``num_images``, the data configuration and a ``method`` sentence.
    """
    model.eval()
    data_config = resolve_data_config(model=model)
    input_img_mode = 'L' if data_config['input_size'][0] == 1 else 'RGB'
    eval_set = create_dataset(
        dataset, root=data_dir, split=split, is_training=False, input_img_mode=input_img_mode)
    loader = create_loader(
        eval_set,
        input_size=data_config['input_size'],
        batch_size=batch_size,
        is_training=False,
        use_prefetcher=False,
        interpolation=data_config['interpolation'],
        mean=data_config['mean'],
        std=data_config['std'],
        crop_pct=data_config['crop_pct'],
        crop_mode=data_config['crop_mode'],
        num_workers=workers,
    )

    top5_k = min(5, model.num_classes)
    correct1 = correct5 = 0.
    num_images = 0
    start = time.perf_counter()
    with torch.no_grad():
        for images, targets in loader:
            top1, top5 = accuracy(model(images), targets, topk=(1, top5_k))
            correct1 += top1.item() * images.shape[0] / 100
            correct5 += top5.item() * images.shape[0] / 100
            num_images += images.shape[0]
    seconds = time.perf_counter() - start
    if num_images == 0:
        raise ValueError(f"Split {split!r} of '{data_dir}' contains no images. Check --data-dir and --split.")

    label = model_label or model.pretrained_cfg.get('architecture', type(model).__name__)
    config_text = ', '.join(f'{k}={v}' for k, v in data_config.items())
    return dict(
        model=label,
        top1=round(100 * correct1 / num_images, 3),
        top5=round(100 * correct5 / num_images, 3),
        num_images=num_images,
        dataset=dataset or 'image folder',
        split=f'{split} ({num_images:,} images)',
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
        method=(
            f'{command}: timm create_dataset/create_loader eval transform with the published data '
            f'configuration ({config_text}), eval mode, {num_images:,} images, torch {torch.__version__}, '
            f'timm {timm.__version__}, {platform.processor() or platform.machine()} CPU, {seconds:.0f} s'),
    )


def _write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with tmp.open('w', encoding='utf-8') as f:
            json.dump(data, f, indent=2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m hub.evaluate',
        description='Measure top-1/top-5 accuracy of a model with pretrained weights on an evaluation split.')
    parser.add_argument('model', help="Model with weights: 'hf-hub:<org>/<name>', 'local-dir:<folder>' or a "
                                      "timm name with a published configuration.")
    parser.add_argument('--data-dir', required=True, help='Dataset root.')
    parser.add_argument('--dataset', default='', help="timm dataset name ('' for an image folder, the default).")
    parser.add_argument('--split', default='test', help='Split to evaluate (default: %(default)s).')
    parser.add_argument('--batch-size', type=int, default=250, help='Images per batch (default: %(default)s).')
    parser.add_argument('--workers', type=int, default=1, help='DataLoader workers (default: %(default)s).')
    parser.add_argument('--results-file', type=Path, help='Write the results as JSON to this file.')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    if args.results_file and args.results_file.exists():
        raise FileExistsError(f"Results file '{args.results_file}' already exists. Choose another path.")
    model = timm.create_model(args.model, pretrained=True)
    results = evaluate_model(
        model, args.data_dir, dataset=args.dataset, split=args.split, batch_size=args.batch_size,
        workers=args.workers, model_label=args.model)
    if args.results_file:
        _write_json_atomic(args.results_file, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
