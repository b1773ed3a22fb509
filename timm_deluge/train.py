"""A small single-process trainer built from timm's own training parts.

It reads the same YAML recipes as timm's ``train.py --config`` (each key a ``train.py`` argument name) and uses
timm's dataset and loader factories, augmentation, ``create_optimizer_v2``, ``create_scheduler_v2``,
``ModelEmaV3``, autocast AMP and ``CheckpointSaver``. A run folder gets what ``train.py`` writes: ``args.yaml``,
``summary.csv``, ``last.pth.tar``, ``checkpoint-N.pth.tar`` and ``model_best.pth.tar``. After the last epoch the
trainer evaluates the best checkpoint on the evaluation split and prints its top-1.

For multi-process (DDP) training, mixup, distillation and everything else, run timm's ``train.py`` through
``python -m timm_deluge.launch train.py --config RECIPE ...``.

NOTE: checkpoints are written at the end of each epoch, so ``--resume`` restarts an interrupted epoch from its
first step.

Command line::

    python -m timm_deluge.train --config train_configs/fashion_mnist_quick.yaml --output runs/fmnist
"""
import argparse
import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn
import yaml

from timm.data import create_dataset, create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.models import create_model, load_checkpoint, resume_checkpoint
from timm.optim import create_optimizer_v2, optimizer_kwargs
from timm.scheduler import create_scheduler_v2, scheduler_kwargs
from timm.utils import AverageMeter, CheckpointSaver, ModelEmaV3, NativeScaler, accuracy, random_seed, update_summary

import timm_deluge  # noqa: F401  registers the delugenet models
from timm_deluge._files import atomic_path
from timm_deluge.data import default_data_root, prepare_fashion_mnist

__all__ = ['TRAIN_DEFAULTS', 'load_recipe', 'parse_args', 'train', 'evaluate', 'main']

_logger = logging.getLogger('timm_deluge.train')

# The train.py arguments this trainer implements, with the defaults of timm's train.py (pytorch-image-models main
# branch, run with timm 1.0.31), except device. A recipe key outside this set raises an error, not a silent skip.
TRAIN_DEFAULTS: Dict[str, Any] = dict(
    # dataset
    data_dir=None, dataset='', train_split='train', val_split='validation', dataset_download=False,
    # model
    model='resnet50', num_classes=None, in_chans=None, input_size=None, img_size=None, crop_pct=None, mean=None,
    std=None, interpolation='', batch_size=128, validation_batch_size=None, drop=0.0, drop_path=None,
    grad_checkpointing=False,
    # device and precision
    device=None, amp=False, amp_dtype='float16',
    # optimizer
    opt='sgd', opt_eps=None, opt_betas=None, momentum=0.9, weight_decay=2e-5, clip_grad=None, opt_kwargs={},
    # schedule
    sched='cosine', sched_on_updates=False, lr=None, lr_base=0.1, epochs=300, decay_milestones=[90, 180, 270],
    decay_epochs=90, decay_rate=0.1, warmup_epochs=5, warmup_lr=1e-5, warmup_prefix=False, min_lr=0.0,
    cooldown_epochs=0,
    # augmentation and regularisation
    no_aug=False, train_crop_mode=None, scale=[0.08, 1.0], ratio=[3. / 4., 4. / 3.], hflip=0.5, vflip=0.0,
    color_jitter=0.4, aa=None, reprob=0.0, remode='pixel', recount=1, smoothing=0.1,
    # EMA
    model_ema=False, model_ema_decay=0.9998, model_ema_warmup=False,
    # run
    seed=42, log_interval=50, checkpoint_hist=10, workers=4, no_prefetcher=False, pin_mem=False, eval_metric='top1',
)


def load_recipe(path: str) -> Dict[str, Any]:
    """Load a YAML recipe and check that this trainer implements each of its keys."""
    with open(path) as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f'{path} must contain a mapping of train.py argument names to values.')
    unknown = sorted(set(recipe) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(
            f'{path} sets {unknown}, which timm_deluge.train does not implement. Remove them, or train with timm\'s '
            f'train.py: python -m timm_deluge.launch train.py --config {path} ...')
    return recipe


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line. Values come from the defaults, then the recipe, then the command line."""
    parser = argparse.ArgumentParser(
        prog='python -m timm_deluge.train', description='Train and evaluate a model with timm\'s training parts.')
    parser.add_argument('--config', '-c', required=True, help='YAML recipe whose keys are train.py argument names.')
    parser.add_argument('--output', required=True, help='Run folder for args.yaml, summary.csv and checkpoints.')
    parser.add_argument('--resume', default='', help='Checkpoint to resume from, usually OUTPUT/last.pth.tar.')
    parser.add_argument('--data-dir', default=None, help='Dataset root (default for torch/fashion_mnist: prepared '
                                                         'under $TIMM_DELUGE_DATA or ~/.cache/timm_deluge/data).')
    parser.add_argument('--train-samples', type=int, default=None,
                        help='torch/fashion_mnist only: train on the first N training images (default: all 60000).')
    parser.add_argument('--model', default=None, help='Model name, overriding the recipe.')
    parser.add_argument('--epochs', type=int, default=None, help='Number of epochs, overriding the recipe.')
    parser.add_argument('--seed', type=int, default=None, help='Random seed, overriding the recipe.')
    parser.add_argument('--workers', '-j', type=int, default=None, help='Data loader processes, overriding the recipe.')
    parser.add_argument('--device', default=None, help='Device (default: cuda when available, else cpu).')
    parser.add_argument('--max-steps', type=int, default=None,
                        help='Stop each epoch after this many optimizer steps (for smoke tests).')
    parser.add_argument('--no-progress', action='store_true', help='Log at log_interval instead of a progress bar.')
    cli = parser.parse_args(argv)

    values = dict(TRAIN_DEFAULTS)
    values.update(load_recipe(cli.config))
    for key in ('data_dir', 'model', 'epochs', 'seed', 'workers', 'device'):
        if getattr(cli, key) is not None:
            values[key] = getattr(cli, key)
    values.update(
        config=cli.config, output=cli.output, resume=cli.resume, train_samples=cli.train_samples,
        max_steps=cli.max_steps, progress=not cli.no_progress)
    if values['device'] is None:
        values['device'] = 'cuda' if torch.cuda.is_available() else 'cpu'
    return argparse.Namespace(**values)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _prepare_output(args: argparse.Namespace) -> Path:
    output = Path(args.output)
    if args.resume and not Path(args.resume).is_file():
        raise FileNotFoundError(
            f'Checkpoint {args.resume!r} given to --resume not found. Pass the last.pth.tar of an earlier run.')
    if output.exists() and any(output.iterdir()) and not args.resume:
        raise FileExistsError(
            f'Output folder {output} is not empty. Pass --resume {output / "last.pth.tar"} to continue that run, or '
            f'choose a new --output.')
    output.mkdir(parents=True, exist_ok=True)
    return output


def _resolve_data_root(args: argparse.Namespace) -> Optional[str]:
    if args.dataset == 'torch/fashion_mnist':
        root = args.data_dir
        if root is None:
            suffix = 'full' if args.train_samples is None else f'train{args.train_samples}'
            root = default_data_root() / f'fashion_mnist_{suffix}'
        return str(prepare_fashion_mnist(root, train_samples=args.train_samples, download=True))
    if args.train_samples is not None:
        raise ValueError(f'--train-samples only applies to torch/fashion_mnist, not dataset={args.dataset!r}.')
    if args.data_dir is None:
        raise ValueError(f'dataset={args.dataset!r} needs --data-dir.')
    return args.data_dir


def _create_loaders(args: argparse.Namespace, data_config: Dict[str, Any], device: torch.device):
    root = _resolve_data_root(args)
    in_chans = data_config['input_size'][0]
    # timm's folder datasets convert images to this mode; the torchvision datasets keep their own mode.
    img_mode = 'RGB' if in_chans == 3 else 'L'
    dataset_train = create_dataset(
        args.dataset, root=root, split=args.train_split, is_training=True, download=args.dataset_download,
        batch_size=args.batch_size, seed=args.seed, input_img_mode=img_mode)
    dataset_eval = create_dataset(
        args.dataset, root=root, split=args.val_split, is_training=False, download=args.dataset_download,
        batch_size=args.validation_batch_size or args.batch_size, input_img_mode=img_mode)
    use_prefetcher = not args.no_prefetcher
    loader_train = create_loader(
        dataset_train,
        input_size=data_config['input_size'],
        batch_size=args.batch_size,
        is_training=True,
        no_aug=args.no_aug,
        re_prob=args.reprob,
        re_mode=args.remode,
        re_count=args.recount,
        train_crop_mode=args.train_crop_mode,
        scale=args.scale,
        ratio=args.ratio,
        hflip=args.hflip,
        vflip=args.vflip,
        color_jitter=args.color_jitter,
        auto_augment=args.aa,
        interpolation=data_config['interpolation'],
        mean=data_config['mean'],
        std=data_config['std'],
        num_workers=args.workers,
        pin_memory=args.pin_mem,
        device=device,
        use_prefetcher=use_prefetcher,
    )
    loader_eval = create_loader(
        dataset_eval,
        input_size=data_config['input_size'],
        batch_size=args.validation_batch_size or args.batch_size,
        is_training=False,
        interpolation=data_config['interpolation'],
        mean=data_config['mean'],
        std=data_config['std'],
        num_workers=args.workers,
        crop_pct=data_config['crop_pct'],
        pin_memory=args.pin_mem,
        device=device,
        use_prefetcher=use_prefetcher,
    )
    return loader_train, loader_eval


def _autocast(args: argparse.Namespace, device: torch.device):
    if not args.amp:
        return nullcontext()
    if args.amp_dtype not in ('float16', 'bfloat16'):
        raise ValueError(f'amp_dtype={args.amp_dtype!r} is invalid. Use float16 or bfloat16.')
    return torch.autocast(device_type=device.type, dtype=getattr(torch, args.amp_dtype))


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader: Any,
        args: argparse.Namespace,
        device: torch.device,
) -> Dict[str, float]:
    """Evaluate ``model`` on every batch of ``loader``.

    Returns:
        Mean cross-entropy ``loss`` and ``top1``/``top5`` accuracy in percent.
    """
    model.eval()
    loss_fn = nn.CrossEntropyLoss()
    losses, top1, top5 = AverageMeter(), AverageMeter(), AverageMeter()
    for images, target in loader:
        images, target = images.to(device), target.to(device)
        with _autocast(args, device):
            output = model(images)
        loss = loss_fn(output.float(), target)
        acc1, acc5 = accuracy(output, target, topk=(1, min(5, output.shape[-1])))
        losses.update(loss.item(), images.shape[0])
        top1.update(acc1.item(), images.shape[0])
        top5.update(acc5.item(), images.shape[0])
    return {'loss': losses.avg, 'top1': top1.avg, 'top5': top5.avg}


def _train_one_epoch(
        epoch: int,
        model: nn.Module,
        loader: Any,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        lr_scheduler: Any,
        model_ema: Optional[ModelEmaV3],
        loss_scaler: Optional[NativeScaler],
        args: argparse.Namespace,
        device: torch.device,
) -> Dict[str, float]:
    model.train()
    losses = AverageMeter()
    num_updates = epoch * len(loader)
    steps = len(loader) if args.max_steps is None else min(args.max_steps, len(loader))
    progress = None
    if args.progress:
        from tqdm import tqdm
        progress = tqdm(total=steps, desc=f'epoch {epoch}', unit='batch', dynamic_ncols=True)
    start = time.time()
    for step, (images, target) in enumerate(loader):
        if step >= steps:
            break
        images, target = images.to(device), target.to(device)
        with _autocast(args, device):
            output = model(images)
            loss = loss_fn(output, target)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f'Loss is {loss.item()} at epoch {epoch}, step {step}. Lower lr or disable amp.')

        optimizer.zero_grad(set_to_none=True)
        if loss_scaler is not None:
            loss_scaler(loss, optimizer, clip_grad=args.clip_grad, parameters=model.parameters())
        else:
            loss.backward()
            if args.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
        num_updates += 1
        if model_ema is not None:
            model_ema.update(model, step=num_updates)
        losses.update(loss.item(), images.shape[0])
        lr_scheduler.step_update(num_updates=num_updates, metric=losses.avg)

        lr = optimizer.param_groups[0]['lr']
        if progress is not None:
            progress.set_postfix(loss=f'{losses.val:.3f}', avg=f'{losses.avg:.3f}', lr=f'{lr:.2e}')
            progress.update()
        elif step % args.log_interval == 0 or step == steps - 1:
            rate = (step + 1) * args.batch_size / (time.time() - start)
            _logger.info(
                f'epoch {epoch} step {step + 1}/{steps} loss {losses.val:.4f} ({losses.avg:.4f}) lr {lr:.3e} '
                f'{rate:.1f} img/s')
    if progress is not None:
        progress.close()
    return {'loss': losses.avg}


def _create_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    kwargs: Dict[str, Any] = {}
    if args.num_classes is not None:
        kwargs['num_classes'] = args.num_classes
    in_chans = args.in_chans
    if in_chans is None and args.input_size is not None:
        in_chans = args.input_size[0]
    if in_chans is not None:
        kwargs['in_chans'] = in_chans
    if args.drop:
        kwargs['drop_rate'] = args.drop
    if args.drop_path is not None:
        kwargs['drop_path_rate'] = args.drop_path
    model = create_model(args.model, pretrained=False, **kwargs)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(enable=True)
    return model.to(device)


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Train ``args.model`` with the recipe in ``args``, then evaluate the best checkpoint.

    Returns:
        ``best_checkpoint`` (path), ``best_metric`` and ``best_epoch`` as tracked by ``CheckpointSaver`` and
        ``test`` (the best checkpoint's metrics on ``args.val_split``).
    """
    output = _prepare_output(args)
    device = torch.device(args.device)
    random_seed(args.seed, 0)

    model = _create_model(args, device)
    data_config = resolve_data_config(vars(args), model=model, verbose=True)
    loader_train, loader_eval = _create_loaders(args, data_config, device)

    if args.lr is None:
        # train.py's rule for a missing lr: lr_base scaled linearly by batch size / 256.
        args.lr = args.lr_base * args.batch_size / 256
    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg=args), **args.opt_kwargs)
    loss_scaler = NativeScaler(device=device.type) if args.amp and args.amp_dtype == 'float16' else None

    start_epoch = 0
    if args.resume:
        start_epoch = resume_checkpoint(model, args.resume, optimizer=optimizer, loss_scaler=loss_scaler) or 0

    model_ema = None
    if args.model_ema:
        model_ema = ModelEmaV3(model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup)
        if args.resume:
            load_checkpoint(model_ema.module, args.resume, use_ema=True)

    updates_per_epoch = len(loader_train)
    lr_scheduler, num_epochs = create_scheduler_v2(
        optimizer, **scheduler_kwargs(args), updates_per_epoch=updates_per_epoch)
    if start_epoch > 0:
        if args.sched_on_updates:
            lr_scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            lr_scheduler.step(start_epoch)

    loss_fn = LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing else nn.CrossEntropyLoss()
    saver = CheckpointSaver(
        model=model, optimizer=optimizer, args=args, model_ema=model_ema, amp_scaler=loss_scaler,
        checkpoint_dir=str(output), recovery_dir=str(output), decreasing=args.eval_metric == 'loss',
        max_history=args.checkpoint_hist)
    if args.resume:
        saver.load_state_dict_from_checkpoint(args.resume)

    args_text = yaml.safe_dump(
        {k: v for k, v in vars(args).items()}, default_flow_style=False, sort_keys=True)
    _write_text_atomic(output / 'args.yaml', args_text)
    _logger.info(
        f'Training {args.model} for epochs {start_epoch}..{num_epochs - 1} on {device}, {updates_per_epoch} steps '
        f'per epoch, output {output}')

    summary = output / 'summary.csv'
    for epoch in range(start_epoch, num_epochs):
        train_metrics = _train_one_epoch(
            epoch, model, loader_train, optimizer, loss_fn, lr_scheduler, model_ema, loss_scaler, args, device)
        eval_metrics = evaluate(model, loader_eval, args, device)
        metric = eval_metrics[args.eval_metric]
        if model_ema is not None:
            # As in train.py, the EMA weights' metric ranks the checkpoints when EMA is enabled.
            ema_metrics = evaluate(model_ema.module, loader_eval, args, device)
            eval_metrics.update({f'ema_{k}': v for k, v in ema_metrics.items()})
            metric = ema_metrics[args.eval_metric]
        lr = optimizer.param_groups[0]['lr']
        update_summary(
            epoch, train_metrics, eval_metrics, filename=str(summary), lr=lr,
            write_header=not summary.exists())
        best_metric, best_epoch = saver.save_checkpoint(epoch, metric=metric)
        lr_scheduler.step(epoch + 1, metric)
        _logger.info(
            f'epoch {epoch}: train loss {train_metrics["loss"]:.4f}, {args.val_split} top-1 '
            f'{eval_metrics["top1"]:.2f}' + (f', EMA top-1 {eval_metrics["ema_top1"]:.2f}' if model_ema else ''))

    best_path = output / 'model_best.pth.tar'
    best_model = _create_model(args, device)
    load_checkpoint(best_model, str(best_path), use_ema=model_ema is not None)
    test_metrics = evaluate(best_model, loader_eval, args, device)
    weights = 'EMA weights' if model_ema is not None else 'weights'
    print(
        f'{args.model}: {args.val_split} top-1 {test_metrics["top1"]:.2f}, top-5 {test_metrics["top5"]:.2f} '
        f'({len(loader_eval.dataset)} images, {weights} of {best_path}, epoch {saver.best_epoch})', flush=True)
    return {
        'best_checkpoint': str(best_path),
        'best_metric': saver.best_metric,
        'best_epoch': saver.best_epoch,
        'test': test_metrics,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    args = parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        # Bad paths and settings end with one line; other errors keep their traceback.
        print(f'timm_deluge.train: error: {e}', file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == '__main__':
    main()
