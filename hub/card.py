"""Model card (README.md) of a published DelugeNet checkpoint.

The YAML front matter is written by huggingface_hub's ``ModelCardData``, so the Hub reads the library, tags,
license, datasets, metrics and evaluation results from it. The body states what a user needs to choose and
run the weights: size, compute, input, training recipe, measured accuracy and usage code.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch.nn as nn
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from timm_deluge.analysis import count_multiply_adds

__all__ = ['EvalReport', 'CardInfo', 'count_macs', 'build_model_card', 'CITATION']

CITATION = """@article{kuen2016delugenets,
  title={DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information Inflows},
  author={Kuen, Jason and Kong, Xiangfei and Wang, Gang and Tan, Yap-Peng},
  journal={arXiv preprint arXiv:1611.05552},
  year={2016}
}"""

# Training arguments of timm's train.py shown in the card, in this order, when the checkpoint stores them.
_RECIPE_ARGS = (
    'model', 'dataset', 'epochs', 'batch_size', 'opt', 'lr', 'momentum', 'weight_decay', 'sched',
    'warmup_epochs', 'min_lr', 'smoothing', 'drop_rate', 'drop_path', 'mixup', 'cutmix', 'aa', 'reprob',
    'model_ema', 'model_ema_decay', 'amp', 'seed',
)


@dataclass
class EvalReport:
    """Accuracy measured on an evaluation split, with the command and data that measured it."""
    top1: float
    top5: Optional[float]
    dataset: str  # Hub dataset id, e.g. 'zalando-datasets/fashion_mnist'
    split: str  # e.g. 'test (10,000 images)'
    method: str  # how it was measured: command line, preprocessing, hardware


@dataclass
class CardInfo:
    """Everything the card states about one published checkpoint."""
    repo_id: str
    model_name: str  # architecture name as registered with timm
    param_count: int
    macs: int  # multiply-adds of one forward pass at input_size
    input_size: Sequence[int]  # (channels, height, width)
    num_classes: int
    license: str
    datasets: List[str]
    weights_description: str  # which weights of which checkpoint were published
    recipe_args: Dict[str, Any] = field(default_factory=dict)
    recipe_file: Optional[str] = None
    trainer_metric: Optional[float] = None  # best eval metric recorded by the checkpoint saver
    trainer_epoch: Optional[int] = None
    eval_report: Optional[EvalReport] = None
    tags: List[str] = field(default_factory=list)


def count_macs(model: nn.Module, input_size: Sequence[int]) -> int:
    """Count convolution and linear multiply-adds of one eval-mode forward pass with fvcore.

    BatchNorm, pooling and the cross-layer weighted sums are left out, as in published GMAC tables.
    """
    return count_multiply_adds(model, tuple(input_size))


def _recipe_section(info: CardInfo) -> str:
    lines = ['## Training recipe', '']
    if info.recipe_file:
        lines += [f'Trained with the recipe `{info.recipe_file}` of the timm-deluge repository.', '']
    args = {k: info.recipe_args[k] for k in _RECIPE_ARGS if k in info.recipe_args}
    if args:
        lines += ['Arguments stored in the training checkpoint:', '', '| argument | value |', '|---|---|']
        lines += [f'| `{k}` | `{json.dumps(v, default=str)}` |' for k, v in args.items()]
    elif not info.recipe_file:
        lines += ['The checkpoint stores no training arguments, and no recipe file was given.']
    lines += ['', f'Published weights: {info.weights_description}.']
    if info.trainer_metric is not None:
        lines += [
            f'The checkpoint stores {info.trainer_metric:.4f} (epoch {info.trainer_epoch}) as the metric its trainer '
            f"ranked checkpoints by. timm's train.py ranks by the EMA model's metric when it keeps EMA weights."]
    return '\n'.join(lines)


def _accuracy_section(info: CardInfo) -> str:
    report = info.eval_report
    if report is None:
        return '## Accuracy\n\nNot measured: the weights were published without an evaluation report.'
    lines = [
        '## Accuracy', '',
        '| dataset | split | top-1 (%) | top-5 (%) |', '|---|---|---|---|',
        f"| {report.dataset} | {report.split} | {report.top1:.2f} | "
        f"{'' if report.top5 is None else f'{report.top5:.2f}'} |",
        '', f'Measured by: {report.method}',
    ]
    return '\n'.join(lines)


def _usage_section(info: CardInfo) -> str:
    channels, height, width = info.input_size
    return f"""## Usage

The model family is registered with timm by importing `timm_deluge`.

### Image classification

```python
import timm
import timm_deluge  # registers the delugenet_* models
import torch
from PIL import Image

model = timm.create_model('hf-hub:{info.repo_id}', pretrained=True).eval()
data_config = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**data_config, is_training=False)

image = Image.open('image.png').convert('{'L' if channels == 1 else 'RGB'}')
with torch.no_grad():
    probabilities = model(transform(image).unsqueeze(0)).softmax(dim=-1)
top5_probabilities, top5_class_indices = probabilities.topk(5)
```

### Feature maps

```python
model = timm.create_model('hf-hub:{info.repo_id}', pretrained=True, features_only=True).eval()
features = model(torch.randn(1, {channels}, {height}, {width}))
for feature in features:
    print(feature.shape)  # the stem output, then one map per stage
```

### Fine-tuning

`num_classes` replaces the classifier, and `in_chans` adapts the first convolution:

```python
model = timm.create_model('hf-hub:{info.repo_id}', pretrained=True, num_classes=5, in_chans=3)
```"""


def build_model_card(info: CardInfo) -> str:
    """Return the README.md text, with YAML front matter, for a published checkpoint."""
    eval_results = None
    metrics = []
    if info.eval_report is not None:
        metrics = ['accuracy']
        eval_results = [EvalResult(
            task_type='image-classification',
            dataset_type=info.eval_report.dataset,
            dataset_name=info.eval_report.dataset,
            dataset_split='test',
            metric_type='accuracy',
            metric_name='Top-1 accuracy',
            metric_value=round(info.eval_report.top1, 2),
        )]
    card_data = ModelCardData(
        library_name='timm',
        pipeline_tag='image-classification',
        license=info.license,
        tags=['image-classification', 'timm', 'timm-deluge', 'delugenet', *info.tags],
        datasets=info.datasets,
        metrics=metrics or None,
        model_name=info.repo_id.split('/')[-1],
        eval_results=eval_results,
    )
    channels, height, width = info.input_size
    body = f"""
# Model card for {info.repo_id.split('/')[-1]}

A DelugeNet image classifier (`{info.model_name}`) for timm, from timm-deluge. DelugeNets (Kuen, Kong, Wang,
Tan, [arXiv:1611.05552](https://arxiv.org/abs/1611.05552)) replace ResNet's residual sum with a cross-layer
depthwise convolution: every composite layer reads a learned per-channel weighting of the outputs of all
earlier layers in its stage.

## Model details

- **Model type:** image classification / feature backbone
- **Architecture:** `{info.model_name}`
- **Parameters (M):** {info.param_count / 1e6:.3f} ({info.param_count:,})
- **GMACs:** {info.macs / 1e9:.4f} (convolution and linear multiply-adds at {height}x{width}, counted by fvcore)
- **Image size:** {height} x {width}, {channels} channel{'' if channels == 1 else 's'}
- **Classes:** {info.num_classes}
- **Datasets:** {', '.join(info.datasets) or 'not recorded'}
- **Paper:** DelugeNets: Deep Networks with Efficient and Flexible Cross-layer Information Inflows,
  https://arxiv.org/abs/1611.05552
- **Original code:** https://github.com/xternalz/DelugeNets (Lua Torch7; the authors published no weights)

{_recipe_section(info)}

{_accuracy_section(info)}

{_usage_section(info)}

## Citation

```bibtex
{CITATION}
```
"""
    return str(ModelCard(f'---\n{card_data.to_yaml()}\n---\n{body}'))
