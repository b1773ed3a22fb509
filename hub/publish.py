"""Publish a DelugeNet training checkpoint as a Hugging Face Hub model repo.

Writes ``model.safetensors``, timm's ``config.json`` and a ``README.md`` model card into a new folder, checks
that timm loads the folder back with outputs equal to the checkpoint's, and uploads it with ``--push``.
Without ``--push`` nothing leaves the machine. The repo is named ``<org>/<architecture>.<tag>``, as timm names
its own weights, and the organisation defaults to ``timm_deluge.models.pretrained.HUB_ORG``.

Example, from the repository root::

    python -m hub.publish output/train/fmnist/model_best.pth.tar --tag fmnist \\
        --dataset zalando-datasets/fashion_mnist --results results.json --out hub_models/delugenet_56_cifar.fmnist
"""
import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import timm
import torch
import torch.nn as nn
from timm.data import resolve_data_config
from timm.models import get_arch_pretrained_cfgs, save_for_hf

import timm_deluge  # noqa: F401  registers the delugenet_* models
from timm_deluge.models.pretrained import HUB_ORG

from timm_deluge._files import apply_default_permissions
from .card import CardInfo, EvalReport, build_model_card, count_macs
from .checkpoint import CheckpointError, TrainingCheckpoint, load_matching_state_dict, read_checkpoint
from .evaluate import evaluate_model

__all__ = ['PublishRequest', 'publish', 'push_folder', 'main']

_logger = logging.getLogger(__name__)

_TAG_PATTERN = re.compile(r'^[a-z0-9][a-z0-9_]*$')
# Data configuration keys of timm's train.py arguments that describe the preprocessing of the weights.
_DATA_ARG_KEYS = ('input_size', 'img_size', 'in_chans', 'mean', 'std', 'crop_pct', 'crop_mode', 'interpolation')


@dataclass
class PublishRequest:
    """Publishing request: checkpoint, repo name and card facts, as ``python -m hub.publish`` takes them."""
    checkpoint: Path
    tag: str
    model_name: Optional[str] = None
    use_ema: bool = False
    org: str = HUB_ORG
    out: Optional[Path] = None
    overwrite: bool = False
    data_args: Optional[Dict[str, Any]] = None  # replaces the checkpoint's mean, std, input_size, ...
    datasets: Sequence[str] = ()
    label_names: Optional[List[str]] = None
    license: str = 'mit'
    recipe_file: Optional[str] = None
    eval_report: Optional[EvalReport] = None
    eval_data_dir: Optional[str] = None  # measure the accuracy of the loaded-back folder on this dataset root
    eval_timm_dataset: Optional[str] = None  # timm dataset name, default: the checkpoint's --dataset
    eval_split: Optional[str] = None  # default: the checkpoint's --val-split, else 'test'
    eval_dataset: Optional[str] = None  # Hub id of the evaluation dataset, for the card

    @property
    def repo_name(self) -> str:
        return f'{self.model_name}.{self.tag}'

    @property
    def repo_id(self) -> str:
        return f'{self.org}/{self.repo_name}'


def _resolve_model_name(request: PublishRequest, checkpoint: TrainingCheckpoint) -> str:
    recorded = checkpoint.args.get('model') or checkpoint.arch
    name = request.model_name or recorded
    if not name:
        raise CheckpointError(
            f"'{checkpoint.path}' does not record its architecture (no 'arch' or 'args.model'). "
            f"Name it with --model, e.g. --model delugenet_56_cifar.")
    name = name.split('.')[0]
    if name not in timm.list_models('delugenet*'):
        raise CheckpointError(
            f"'{checkpoint.path}' records the architecture {name!r}, which is not a DelugeNet model registered by "
            f"timm_deluge. Name the architecture with --model, or publish other models with timm's own tools.")
    if request.model_name and recorded and recorded.split('.')[0] != name and recorded in timm.list_models():
        raise CheckpointError(
            f"'{checkpoint.path}' records the architecture {recorded!r}, but --model is {name!r}. "
            f"Drop --model or pass --model {recorded}.")
    return name


def _infer_head_args(state_dict: Dict[str, torch.Tensor]) -> Dict[str, int]:
    # The classifier and the first convolution fix num_classes and in_chans. Their absence is reported as
    # missing keys when the weights are loaded into the model.
    args = {}
    if 'head.fc.weight' in state_dict:
        args['num_classes'] = state_dict['head.fc.weight'].shape[0]
    if 'stem.conv.weight' in state_dict and state_dict['stem.conv.weight'].ndim == 4:
        args['in_chans'] = state_dict['stem.conv.weight'].shape[1]
    return args


def _build_source_model(request: PublishRequest, checkpoint: TrainingCheckpoint, model_name: str) -> nn.Module:
    # A tag with its own configuration (e.g. cifar10) starts from it, any other tag from the default one.
    tagged = f'{model_name}.{request.tag}'
    base_cfg = tagged if tagged in get_arch_pretrained_cfgs(model_name) else model_name
    model_args = _infer_head_args(checkpoint.state_dict)
    model = timm.create_model(base_cfg, pretrained=False, **model_args)
    load_matching_state_dict(model, checkpoint.state_dict, checkpoint.path, model_name)
    return model.eval()


def _resolve_data_config(request: PublishRequest, checkpoint: TrainingCheckpoint, model: nn.Module) -> Dict[str, Any]:
    args = {k: checkpoint.args[k] for k in _DATA_ARG_KEYS if checkpoint.args.get(k) not in (None, '')}
    args.update({k: v for k, v in (request.data_args or {}).items() if v is not None})
    args['in_chans'] = model.in_chans
    if args.get('input_size') is not None and args['input_size'][0] != model.in_chans:
        raise ValueError(
            f"input_size={tuple(args['input_size'])} has {args['input_size'][0]} channels but the checkpoint's "
            f"first convolution reads {model.in_chans}. Pass --input-size {model.in_chans} H W.")
    data_config = resolve_data_config(args=args, model=model)
    for key in ('mean', 'std'):
        if len(data_config[key]) != model.in_chans:
            raise ValueError(
                f'{key}={tuple(data_config[key])} has {len(data_config[key])} values but the model reads '
                f'{model.in_chans} channels, and the checkpoint stores no {key}. Pass --{key} with '
                f'{model.in_chans} value(s), the normalisation used in training.')
    return data_config


def _model_config(request: PublishRequest) -> Dict[str, Any]:
    model_config: Dict[str, Any] = {'pretrained_cfg': {'tag': request.tag, 'license': request.license}}
    if request.label_names:
        model_config['label_names'] = list(request.label_names)
    return model_config


def _load_back(folder: Path, model: nn.Module) -> nn.Module:
    """Load the folder through timm's ``local-dir:`` source and require outputs equal to the source model's."""
    loaded = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, *loaded.pretrained_cfg['input_size'], generator=generator)
    with torch.no_grad():
        expected, actual = model(x), loaded(x)
    if not torch.equal(expected, actual):
        max_diff = (expected - actual).abs().max().item()
        raise RuntimeError(
            f"timm loads '{folder}' with outputs that differ from the checkpoint's by up to {max_diff:.3g}. "
            f"The folder was not published.")
    return loaded


def _evaluate(model: nn.Module, request: PublishRequest, checkpoint: TrainingCheckpoint) -> EvalReport:
    # By default the split is the one the trainer validated on, read the same way.
    dataset = request.eval_timm_dataset
    if dataset is None:
        dataset = checkpoint.args.get('dataset') or ''
    split = request.eval_split or checkpoint.args.get('val_split') or 'test'
    results = evaluate_model(
        model, request.eval_data_dir, dataset=dataset, split=split,
        command=f"python -m hub.publish --eval-data-dir DIR --eval-timm-dataset '{dataset}' --eval-split {split}")
    _logger.info('Top-1 %.3f %%, top-5 %.3f %% on %s', results['top1'], results['top5'], results['split'])
    return EvalReport(
        top1=results['top1'],
        top5=results['top5'],
        dataset=request.eval_dataset or (request.datasets[0] if request.datasets else results['dataset']),
        split=results['split'],
        method=results['method'],
    )


def _replace_folder(tmp_dir: Path, out: Path, overwrite: bool) -> None:
    if not out.exists():
        os.replace(tmp_dir, out)
        return
    if not overwrite:
        raise FileExistsError(f"Output folder '{out}' already exists. Pass --overwrite to replace it.")
    old_dir = Path(tempfile.mkdtemp(prefix=f'.{out.name}.old.', dir=out.parent))
    os.replace(out, old_dir / out.name)
    os.replace(tmp_dir, out)
    shutil.rmtree(old_dir)


def publish(request: PublishRequest) -> Path:
    """Write the Hub folder of a checkpoint and return its path.

    The folder is assembled in a temporary sibling and moved into place only after timm has loaded it back
    with equal outputs, so a failed run leaves no partial folder behind.

    Raises:
        FileExistsError: If the output folder exists and ``overwrite`` is False.
        CheckpointError: If the checkpoint is unreadable or does not match the architecture.
        ValueError: If the tag or the data configuration is invalid.
    """
    if not _TAG_PATTERN.match(request.tag):
        raise ValueError(
            f'tag={request.tag!r} is invalid: use lowercase letters, digits and underscores, e.g. fmnist or in1k.')
    checkpoint = read_checkpoint(request.checkpoint, use_ema=request.use_ema)
    request.model_name = _resolve_model_name(request, checkpoint)
    out = Path(request.out or Path('hub_models') / request.org / request.repo_name)
    if out.exists() and not request.overwrite:
        raise FileExistsError(f"Output folder '{out}' already exists. Pass --overwrite to replace it.")

    model = _build_source_model(request, checkpoint, request.model_name)
    data_config = _resolve_data_config(request, checkpoint, model)
    model_config = _model_config(request)
    weights = checkpoint.weights_key or 'the state dict'
    info = CardInfo(
        repo_id=request.repo_id,
        model_name=request.model_name,
        param_count=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, data_config['input_size']),
        input_size=data_config['input_size'],
        num_classes=model.num_classes,
        license=request.license,
        datasets=list(request.datasets),
        weights_description=f"`{weights}` of `{checkpoint.path.name}`"
                            + (f', epoch {checkpoint.epoch}' if checkpoint.epoch is not None else ''),
        recipe_args=checkpoint.args,
        recipe_file=request.recipe_file or checkpoint.args.get('config'),
        trainer_metric=checkpoint.metric,
        trainer_epoch=checkpoint.epoch,
        eval_report=request.eval_report,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
    try:
        save_for_hf(model, tmp_dir, model_config=model_config, data_config=data_config, safe_serialization=True)
        loaded = _load_back(tmp_dir, model)
        if request.eval_data_dir:
            info.eval_report = _evaluate(loaded, request, checkpoint)
        (tmp_dir / 'README.md').write_text(build_model_card(info), encoding='utf-8')
        for path in (tmp_dir, *tmp_dir.iterdir()):
            apply_default_permissions(path)
        _replace_folder(tmp_dir, out, request.overwrite)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    _logger.info('Wrote %s for %s', out, request.repo_id)
    return out


def push_folder(
        folder: Path,
        repo_id: str,
        token: Optional[str] = None,
        private: bool = False,
        commit_message: str = 'Add weights',
) -> str:
    """Upload a folder written by ``publish`` to a Hub model repo, creating the repo if needed.

    The folder is uploaded as written and checked, in one commit. timm's ``push_to_hf_hub`` would serialize
    the model again and write a generated card only to a repo without one, so it cannot upload this card.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name='timm', library_version=timm.__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    return commit.commit_url


def _read_eval_report(args: argparse.Namespace) -> Optional[EvalReport]:
    if not args.results:
        return None
    if args.eval_data_dir:
        raise ValueError('--results and --eval-data-dir both give the accuracy. Pass only one of them.')
    results = json.loads(Path(args.results).read_text(encoding='utf-8'))
    if isinstance(results, list) and len(results) == 1:
        # timm's validate.py writes a list with one entry per model.
        results = results[0]
    if not isinstance(results, dict) or 'top1' not in results:
        raise ValueError(
            f"Results file '{args.results}' has no 'top1' entry. Use the output of python -m hub.evaluate or "
            f"of timm's validate.py --results-file.")
    method = args.eval_method or results.get('method')
    if not method:
        raise ValueError(f"Results file '{args.results}' does not say how it was measured. Pass --eval-method.")
    return EvalReport(
        top1=float(results['top1']),
        top5=float(results['top5']) if results.get('top5') is not None else None,
        dataset=args.eval_dataset or results.get('dataset') or (args.dataset[0] if args.dataset else 'unknown'),
        split=args.eval_split or results.get('split', 'test'),
        method=method,
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m hub.publish',
        description='Write a Hugging Face Hub folder (model.safetensors, config.json, README.md) for a DelugeNet '
                    'checkpoint, and upload it with --push.')
    parser.add_argument('checkpoint', type=Path, help='Checkpoint of timm train.py or of the timm-deluge trainer, '
                                                      'a state dict .pth, or a .safetensors file.')

    parser.add_argument('--tag', required=True, help='Pretrained tag: the repo is <org>/<architecture>.<tag>.')
    parser.add_argument('--model', help='Architecture name, if the checkpoint does not record it.')
    parser.add_argument('--ema', action='store_true', help='Publish the EMA weights (state_dict_ema).')
    parser.add_argument('--org', default=HUB_ORG, help='Hub organisation or user (default: %(default)s, set by '
                                                       'TIMM_DELUGE_HUB_ORG).')
    parser.add_argument('--out', type=Path, help='Output folder (default: hub_models/<org>/<architecture>.<tag>).')
    parser.add_argument('--overwrite', action='store_true', help='Replace the output folder if it exists.')

    parser.add_argument('--mean', type=float, nargs='+', help='Normalisation mean per channel, 0-1 pixel scale.')
    parser.add_argument('--std', type=float, nargs='+', help='Normalisation std per channel, 0-1 pixel scale.')
    parser.add_argument('--input-size', type=int, nargs=3, metavar=('C', 'H', 'W'), help='Input size.')
    parser.add_argument('--crop-pct', type=float, help='Centre crop fraction for evaluation.')
    parser.add_argument('--interpolation', help='Resize interpolation, e.g. bilinear or bicubic.')

    parser.add_argument('--dataset', nargs='*', default=[], help='Hub ids of the training datasets, for the card.')
    parser.add_argument('--label-names', nargs='+', help='Class names, in classifier order.')
    parser.add_argument('--license', default='mit', help='License id for the card (default: %(default)s).')
    parser.add_argument('--recipe', help="Training recipe file to name in the card (default: the checkpoint's "
                                         "--config), e.g. train_configs/fashion_mnist_quick.yaml.")

    parser.add_argument('--results', help='Accuracy JSON from python -m hub.evaluate or timm validate.py.')
    parser.add_argument('--eval-data-dir', help='Measure the accuracy of the written folder on this dataset root.')
    parser.add_argument('--eval-timm-dataset', help="timm dataset name of --eval-data-dir: '' for an image folder, "
                                                    "e.g. torch/fashion_mnist (default: the checkpoint's --dataset).")
    parser.add_argument('--eval-split', help="Evaluation split (default: the checkpoint's --val-split, else test).")
    parser.add_argument('--eval-dataset', help='Hub id of the evaluation dataset (default: the first --dataset).')
    parser.add_argument('--eval-method', help='How the accuracy was measured (default: from --results).')

    parser.add_argument('--push', action='store_true', help='Upload the folder to the Hub after writing it.')
    parser.add_argument('--private', action='store_true', help='Create the Hub repo as private.')
    parser.add_argument('--token', help='Hub token (default: the one saved by `hf auth login` or HF_TOKEN).')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    request = PublishRequest(
        checkpoint=args.checkpoint,
        tag=args.tag,
        model_name=args.model,
        use_ema=args.ema,
        org=args.org,
        out=args.out,
        overwrite=args.overwrite,
        data_args=dict(mean=args.mean, std=args.std, input_size=args.input_size, crop_pct=args.crop_pct,
                       interpolation=args.interpolation),
        datasets=args.dataset,
        label_names=args.label_names,
        license=args.license,
        recipe_file=args.recipe,
        eval_report=_read_eval_report(args),
        eval_data_dir=args.eval_data_dir,
        eval_timm_dataset=args.eval_timm_dataset,
        eval_split=args.eval_split,
        eval_dataset=args.eval_dataset,
    )
    try:
        folder = publish(request)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        # Bad paths and settings end with one line; other errors keep their traceback.
        print(f'hub.publish: error: {e}', file=sys.stderr)
        return 2
    if args.push:
        url = push_folder(folder, request.repo_id, token=args.token, private=args.private)
        print(f'Pushed {request.repo_id}: {url}')
    else:
        print('Not pushed: run again with --push to upload it.')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
