"""Cross-layer connection strengths, connection plots and model summaries of DelugeNets.

The connection strength of an input map is the L2 norm, over channels, of its column of a cross-layer depthwise
convolution's (C, N) weight, divided by the largest such norm of the same convolution. This is the measure of
Figure 3 of Kuen et al., "DelugeNets" (arXiv:1611.05552), which plots it for the block transitions and for the
classifier's cross-layer convolution. Only relative norms carry meaning there because an affine BatchNorm follows
every cross-layer convolution.

Inputs are indexed as the composite layers of their stage (block): index 0 is h0, the output of the block
transition (or of the 1x1 projection that starts the first ImageNet stage), and index k is composite layer k.
The first CIFAR stage has no h0, so its indices start at 1. Weight columns are stored oldest map first, so column
i of a stage with h0 is index i, and column i of a stage without h0 is index i + 1.

matplotlib and fvcore are imported only by the functions that need them (``pip install timm-deluge[analysis]``).
"""
import csv
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from safetensors import SafetensorError

import timm
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg, load_state_dict, parse_model_name
from timm.models import split_model_name_tag
from timm.utils import load_checkpoint_metadata

from timm_deluge._files import atomic_path
from timm_deluge.layers import CrossLayerDepthwiseConv
from timm_deluge.models.delugenet import DelugeNet, Transition

__all__ = [
    'Connections', 'ModelSummary', 'StageSummary', 'connection_strengths', 'load_connections', 'load_model',
    'plot_connections',
    'write_connections_csv', 'summarize_model', 'format_summary', 'count_multiply_adds', 'list_family',
]

FAMILY_PATTERN = 'delugenet*'
CSV_FIELDS = (
    'consumer', 'kind', 'module', 'stage', 'input_column', 'layer_index', 'input', 'l2_norm', 'normalised_l2_norm',
)
# Suffixes of checkpoint files that timm's ``load_state_dict`` reads with ``torch.load``.
_TORCH_SUFFIXES = ('.pth', '.pth.tar', '.pt', '.tar', '.bin', '.ckpt')
# Model sources that ``timm.create_model`` resolves itself ('hf_hub:' is timm's deprecated spelling).
_SOURCE_PREFIXES = ('hf-hub:', 'hf_hub:', 'local-dir:')


@dataclass
class Connections:
    """Per-input L2 norms of the weight of one cross-layer depthwise convolution.

    ``kind`` is 'transition' (closes a stage and feeds the next block transition), 'classifier' (closes the last
    stage and feeds the head) or 'layer' (the input of a composite layer). ``stage`` is the 1-based stage whose maps
    are read. ``layer_indices`` and ``input_labels`` name each input, oldest first, as in the module docstring.
    """
    consumer: str
    kind: str
    module: str
    stage: int
    layer_indices: List[int]
    input_labels: List[str]
    l2_norms: List[float]

    @property
    def normalised(self) -> List[float]:
        """The L2 norms divided by their maximum, so the strongest input is 1."""
        max_norm = max(self.l2_norms)
        if max_norm == 0:
            return [0.] * len(self.l2_norms)
        return [norm / max_norm for norm in self.l2_norms]


def _has_cross_layer_weights(model: nn.Module) -> bool:
    return isinstance(model, DelugeNet) and any(isinstance(m, CrossLayerDepthwiseConv) for m in model.modules())


def _input_naming(stage: nn.Module, num_inputs: int) -> Tuple[List[int], List[str]]:
    """Return the layer index and label of each of the first ``num_inputs`` maps of ``stage``, oldest first."""
    if stage.transition is None:
        # The first CIFAR stage: the stem output feeds layer 1 only and is not a map of the stage.
        indices = list(range(1, num_inputs + 1))
    else:
        indices = list(range(num_inputs))
    h0_label = 'h0 (transition)' if isinstance(stage.transition, Transition) else 'h0 (projection)'
    labels = [h0_label if index == 0 else f'layer {index}' for index in indices]
    return indices, labels


def _make_connections(
        cldc: CrossLayerDepthwiseConv,
        stage: nn.Module,
        consumer: str,
        kind: str,
        module: str,
        stage_number: int,
) -> Connections:
    weight = cldc.weight.detach().float().cpu()
    indices, labels = _input_naming(stage, weight.shape[1])
    return Connections(
        consumer=consumer,
        kind=kind,
        module=module,
        stage=stage_number,
        layer_indices=indices,
        input_labels=labels,
        l2_norms=torch.linalg.vector_norm(weight, dim=0).tolist(),
    )


def connection_strengths(model: nn.Module, layers: bool = True) -> List[Connections]:
    """Compute the per-input L2 norms of every cross-layer depthwise convolution of a DelugeNet.

    Args:
        model: A DelugeNet, created by timm from a ``delugenet_*`` name.
        layers: Also include the cross-layer convolution of every composite layer that reads 2 or more maps.

    Returns:
        For each stage in order: its composite layers' convolutions (if ``layers``), then the convolution that
        closes the stage ('transition N' for the N-th block transition, 'classifier' for the last stage).

    Raises:
        ValueError: If the model has no cross-layer depthwise convolutions (a ResNet-like baseline or another
            timm model).
    """
    if not _has_cross_layer_weights(model):
        raise ValueError(
            f'{type(model).__name__} has no cross-layer depthwise convolutions, so there are no connection '
            f'strengths to compute. Use a DelugeNet (timm-deluge list), not a ResNet-like baseline.')
    num_stages = len(model.stages)
    result = []
    for i, stage in enumerate(model.stages):
        if layers:
            for j, layer in enumerate(stage.layers):
                if layer.cldc is None:
                    continue
                result.append(_make_connections(
                    layer.cldc, stage, f'stage {i + 1} layer {j + 1}', 'layer', f'stages.{i}.layers.{j}.cldc', i + 1))
        if i < num_stages - 1:
            consumer, kind = f'transition {i + 1}', 'transition'
        else:
            consumer, kind = 'classifier', 'classifier'
        result.append(_make_connections(stage.cldc, stage, consumer, kind, f'stages.{i}.cldc', i + 1))
    return result


def _atomic_write(path: Path, write_fn: Any, binary: bool) -> None:
    """Write a file through ``write_fn(file)`` into a temporary file beside ``path``, then rename it."""
    with atomic_path(path) as tmp:
        with tmp.open('wb' if binary else 'w', **({} if binary else {'newline': '', 'encoding': 'utf-8'})) as f:
            write_fn(f)


def _check_output(path: Union[str, Path], overwrite: bool) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f'Output {str(path)!r} is a directory. Give a file name.')
    if path.exists() and not overwrite:
        raise FileExistsError(
            f'Output {str(path)!r} already exists. Remove it, choose another name, or pass overwrite=True.')
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f'Output directory {str(path.parent)!r} of {str(path)!r} does not exist. Create it first.')
    return path


def write_connections_csv(
        connections: Sequence[Connections],
        path: Union[str, Path],
        overwrite: bool = False,
) -> Path:
    """Write one CSV row per input of every cross-layer convolution in ``connections``, atomically.

    Columns are ``CSV_FIELDS``. ``input_column`` is the column of the (C, N) weight and ``layer_index`` the index of
    the input in its stage (0 is h0).
    """
    path = _check_output(path, overwrite)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(CSV_FIELDS)
    for conn in connections:
        for column, (index, label, norm, normalised) in enumerate(
                zip(conn.layer_indices, conn.input_labels, conn.l2_norms, conn.normalised)):
            writer.writerow([
                conn.consumer, conn.kind, conn.module, conn.stage, column, index, label, f'{norm:.8g}',
                f'{normalised:.8g}'])
    _atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=False)
    return path


def _tick_label(index: int, label: str) -> str:
    return label if index == 0 else str(index)


def _draw_bars(ax: Any, conn: Connections) -> None:
    positions = list(range(len(conn.layer_indices)))
    colors = ['0.55' if index == 0 else 'C0' for index in conn.layer_indices]
    ax.barh(positions, conn.normalised, color=colors, height=0.8)
    ax.set_yticks(positions, [_tick_label(i, lbl) for i, lbl in zip(conn.layer_indices, conn.input_labels)])
    ax.tick_params(axis='y', labelsize=8 if len(positions) <= 20 else 6)
    # Oldest input at the top, as the weight's columns and the CSV rows are ordered.
    ax.set_ylim(len(positions) - 0.5, -0.5)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel('normalised L2 norm')
    if conn.kind == 'transition':
        number = conn.consumer.split()[-1]
        title = f'transition {number}\n(block {conn.stage} to block {conn.stage + 1})'
    else:
        title = f'classifier\n(block {conn.stage} to classification)'
    ax.set_title(title, fontsize=10)
    ax.grid(axis='x', alpha=0.3)


def _draw_heat_map(ax: Any, stage_connections: List[Connections]) -> Any:
    import matplotlib
    import numpy as np

    columns = sorted({index for conn in stage_connections for index in conn.layer_indices})
    matrix = np.full((len(stage_connections), len(columns)), np.nan)
    for row, conn in enumerate(stage_connections):
        for index, value in zip(conn.layer_indices, conn.normalised):
            matrix[row, columns.index(index)] = value
    # Cells of inputs that a consumer does not read are NaN and drawn white.
    cmap = matplotlib.colormaps['viridis'].with_extremes(bad='white')
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1, aspect='auto', interpolation='nearest')
    step = max(1, len(columns) // 12)
    ax.set_xticks(range(0, len(columns), step), [
        'h0' if columns[c] == 0 else str(columns[c]) for c in range(0, len(columns), step)])
    row_step = max(1, len(stage_connections) // 16)
    rows = list(range(0, len(stage_connections) - 1, row_step)) + [len(stage_connections) - 1]
    ax.set_yticks(rows, [
        stage_connections[r].consumer.split('layer ')[-1] if stage_connections[r].kind == 'layer'
        else stage_connections[r].consumer for r in rows])
    ax.tick_params(labelsize=7)
    ax.set_xlabel('input: composite layer index')
    ax.set_title(f'block {stage_connections[-1].stage}, every cross-layer convolution', fontsize=10)
    return image


def plot_connections(
        connections: Sequence[Connections],
        path: Optional[Union[str, Path]] = None,
        title: Optional[str] = None,
        heat_map: bool = False,
        overwrite: bool = False,
        dpi: int = 150,
) -> Any:
    """Draw the normalised L2 norms as horizontal bar charts, one panel per transition and one for the classifier.

    Args:
        connections: Output of ``connection_strengths``. Only its 'transition' and 'classifier' entries are drawn as
            bars. The 'layer' entries are used by the heat maps.
        path: Save the figure here (format from the suffix), atomically. None only returns the figure.
        title: Figure title.
        heat_map: Add a row with one heat map per stage: rows are the consumers in the stage (composite layers,
            then the closing convolution), columns their inputs, colour the normalised L2 norm.
        overwrite: Replace an existing file at ``path``.
        dpi: Resolution of raster output.

    Returns:
        The matplotlib Figure. Its first axes hold the bar panels in stage order.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if path is not None:
        path = _check_output(path, overwrite)
    closing = [conn for conn in connections if conn.kind in ('transition', 'classifier')]
    if not closing:
        raise ValueError('No transition or classifier connections to plot. Pass the output of connection_strengths.')
    layer_conns = [conn for conn in connections if conn.kind == 'layer']
    if heat_map and not layer_conns:
        raise ValueError('The heat map needs the composite layers: call connection_strengths(model, layers=True).')

    num_panels = len(closing)
    max_inputs = max(len(conn.l2_norms) for conn in closing)
    bar_height = max(3.5, 0.2 * max_inputs + 1.5)
    heights = [bar_height, max(3.5, bar_height * 0.9)] if heat_map else [bar_height]
    fig = plt.figure(figsize=(3.6 * num_panels + (0.8 if heat_map else 0), sum(heights) + 0.6), layout='constrained')
    grid = fig.add_gridspec(len(heights), num_panels, height_ratios=heights)
    for col, conn in enumerate(closing):
        ax = fig.add_subplot(grid[0, col])
        _draw_bars(ax, conn)
        if col == 0:
            ax.set_ylabel('composite layer index in block')
    if heat_map:
        image = None
        heat_axes = []
        for col, conn in enumerate(closing):
            stage_conns = [c for c in layer_conns if c.stage == conn.stage] + [conn]
            ax = fig.add_subplot(grid[1, col])
            image = _draw_heat_map(ax, stage_conns)
            if col == 0:
                ax.set_ylabel('consumer: composite layer')
            heat_axes.append(ax)
        fig.colorbar(image, ax=heat_axes, label='normalised L2 norm', shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=11)

    if path is not None:
        suffix = path.suffix.lstrip('.').lower() or 'png'
        _atomic_write(path, lambda f: fig.savefig(f, format=suffix, dpi=dpi), binary=True)
    return fig


def _state_dict_shape(state_dict: Dict[str, Any], key: str, dim: int, default: int) -> int:
    tensor = state_dict.get(key)
    return default if tensor is None else int(tensor.shape[dim])


def _build_from_state_dict(arch: str, state_dict: Dict[str, Any], source: str) -> nn.Module:
    if not timm.is_model(split_model_name_tag(arch)[0]):
        raise ValueError(
            f'Architecture {arch!r} of checkpoint {source!r} is not a registered timm model. Pass --model with a '
            f'name from `timm-deluge list`.')
    # The class count and input channels are read from the weights, so checkpoints fine-tuned to another dataset
    # (such as 1-channel Fashion-MNIST with 10 classes) load without further options.
    num_classes = _state_dict_shape(state_dict, 'head.fc.weight', 0, 0)
    in_chans = _state_dict_shape(state_dict, 'stem.conv.weight', 1, 3)
    model = timm.create_model(arch, num_classes=num_classes, in_chans=in_chans)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise ValueError(f'Checkpoint {source!r} does not match architecture {arch!r}: {e}') from e
    return model


def _load_checkpoint_file(path: Path, model_name: Optional[str], use_ema: bool) -> Tuple[nn.Module, str]:
    source = str(path)
    if path.name.endswith('.safetensors'):
        if not model_name:
            raise ValueError(
                f'Safetensors file {source!r} stores no architecture name. Pass --model NAME, for example '
                f'--model delugenet_56_cifar.')
        arch = model_name
        weights = 'weights'
    else:
        try:
            metadata = load_checkpoint_metadata(source)
        except (RuntimeError, OSError, EOFError, ValueError) as e:
            raise ValueError(f'Checkpoint {source!r} could not be read as a PyTorch checkpoint: {e}') from e
        metadata = metadata if isinstance(metadata, dict) else {}
        arch = model_name or metadata.get('arch')
        if not arch:
            raise ValueError(f'Checkpoint {source!r} stores no architecture name. Pass --model NAME.')
        has_ema = metadata.get('state_dict_ema') is not None or metadata.get('model_ema') is not None
        weights = 'EMA weights' if use_ema and has_ema else 'weights'
    try:
        state_dict = load_state_dict(source, use_ema=use_ema)
    except (RuntimeError, OSError, EOFError, ValueError, SafetensorError) as e:
        raise ValueError(f'Checkpoint {source!r} could not be read: {e}') from e
    model = _build_from_state_dict(arch, state_dict, source)
    return model, f'{weights} from {path.name}'


def load_model(
        source: str,
        model_name: Optional[str] = None,
        use_ema: bool = True,
) -> Tuple[nn.Module, str]:
    """Create a model, with weights, from a registered name, a checkpoint file or an ``hf-hub:``/``local-dir:`` name.

    Args:
        source: A registered name (freshly initialised weights), a timm training checkpoint (``.pth``,
            ``.pth.tar``, with ``state_dict``, optional ``state_dict_ema`` and ``arch``), a ``.safetensors`` file,
            or ``hf-hub:ORG/NAME`` / ``local-dir:FOLDER`` as ``timm.create_model`` accepts them.
        model_name: Architecture of a checkpoint file. Required for ``.safetensors``, optional for timm checkpoints,
            whose ``arch`` entry is the default.
        use_ema: Prefer the EMA weights of a training checkpoint when it has them.

    Returns:
        The model in eval mode and a description of it, such as 'delugenet_56_cifar, EMA weights from last.pth.tar'.

    Raises:
        FileNotFoundError: If ``source`` looks like a file or folder that does not exist.
        ValueError: If ``source`` is not a registered model, or the checkpoint cannot be read or does not match.
    """
    path = Path(source)
    if path.is_file():
        model, description = _load_checkpoint_file(path, model_name, use_ema)
    elif source.startswith(_SOURCE_PREFIXES):
        _, model_id = parse_model_name(source)
        if model_name:
            raise ValueError(f'--model applies to checkpoint files only. {source!r} names its own architecture.')
        if source.startswith('local-dir:') and not Path(model_id).is_dir():
            raise FileNotFoundError(f'Model folder {model_id!r} of {source!r} not found.')
        try:
            model = timm.create_model(source, pretrained=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ValueError(f'Could not create a model with weights from {source!r}: {e}') from e
        description = f'weights from {source}'
    elif path.is_dir():
        raise ValueError(f'{source!r} is a folder. Use local-dir:{source} for a folder with config.json and weights.')
    elif os.sep in source or source.endswith(_TORCH_SUFFIXES + ('.safetensors',)):
        raise FileNotFoundError(f'Checkpoint file {source!r} not found.')
    else:
        if model_name:
            raise ValueError(f'--model applies to checkpoint files only, but {source!r} is a model name.')
        arch, _ = split_model_name_tag(source)
        if not timm.is_model(arch):
            raise ValueError(
                f'{source!r} is neither an existing file nor a registered model. Run `timm-deluge list` for the '
                f'model names.')
        model = timm.create_model(source)
        description = 'freshly initialised weights'
    architecture = model.pretrained_cfg.get('architecture') or type(model).__name__
    return model.eval(), f'{architecture}, {description}'


def load_connections(
        source: str,
        model_name: Optional[str] = None,
        use_ema: bool = True,
) -> Tuple[List[Connections], str]:
    """Load a model as ``load_model`` does and compute the connection strengths of all its cross-layer convolutions.

    Returns:
        The output of ``connection_strengths(model, layers=True)`` and the description of the weights.

    Raises:
        FileNotFoundError, ValueError: As ``load_model``, and ValueError if the model has no cross-layer weights.
    """
    model, description = load_model(source, model_name=model_name, use_ema=use_ema)
    if not _has_cross_layer_weights(model):
        raise ValueError(
            f'{source!r} ({type(model).__name__}) has no cross-layer depthwise convolutions, so it has no '
            f'connection strengths. Use a DelugeNet (timm-deluge list), not a ResNet-like baseline.')
    return connection_strengths(model, layers=True), description


@dataclass
class StageSummary:
    """Structure of one stage: its composite layers (or residual blocks), bottleneck width and output channels."""
    layers: int
    width: int
    channels: int
    reduction: int


@dataclass
class ModelSummary:
    """Size, cost and structure of one model of the family."""
    name: str
    model_class: str
    num_params: int
    cross_layer_params: int
    cross_layer_weight_params: int
    multiply_adds: Optional[int]
    input_size: Tuple[int, int, int]
    depth: int
    num_layers: int
    stages: List[StageSummary]
    feature_info: List[Dict[str, Any]]
    pretrained_tags: List[str]
    default_tag: Optional[str]
    tags_with_weights: List[str] = field(default_factory=list)

    @property
    def cross_layer_share(self) -> float:
        """Fraction of the parameters, weights and biases, that belong to cross-layer depthwise convolutions."""
        return self.cross_layer_params / self.num_params

    def to_dict(self) -> Dict[str, Any]:
        """Return the summary as plain JSON-serialisable types."""
        out = {k: v for k, v in self.__dict__.items() if k != 'stages'}
        out['stages'] = [dict(s.__dict__) for s in self.stages]
        out['input_size'] = list(self.input_size)
        out['cross_layer_share'] = self.cross_layer_share
        return out


def count_multiply_adds(model: nn.Module, input_size: Tuple[int, int, int]) -> int:
    """Count the multiply-adds of convolutions and linear layers for one image, with fvcore.

    Other operators (BatchNorm, pooling, the elementwise cross-layer sums) are not counted. The model is traced in
    eval mode, where the DelugeNet BatchNorms are folded.
    """
    with warnings.catch_warnings():
        # fvcore's import calls torch.jit.script, which warns with a FutureWarning on torch 2.14.1.
        warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, *input_size))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_operator = analysis.by_operator()
    finally:
        model.train(was_training)
    return int(sum(by_operator.get(op, 0) for op in ('conv', 'linear', 'addmm', 'matmul')))


def _stage_blocks(stage: nn.Module) -> nn.Module:
    # DelugeStage keeps composite layers in ``layers``, and the baselines' timm ResNetStage keeps blocks in ``blocks``.
    return stage.layers if hasattr(stage, 'layers') else stage.blocks


def summarize_model(
        name: str,
        multiply_adds: bool = True,
        img_size: Optional[int] = None,
        **kwargs: Any,
) -> ModelSummary:
    """Build a model of the family and summarise it.

    Args:
        name: Registered name, optionally with a tag (``delugenet_146_cifar.cifar10``).
        multiply_adds: Count conv + linear multiply-adds with fvcore, which traces the model once.
        img_size: Square input size for the multiply-add count. Default: the configuration's input size.
        **kwargs: Passed to ``timm.create_model``, e.g. ``num_classes`` or ``in_chans``.

    Raises:
        ValueError: If ``name`` is not registered or not a model of this family.
    """
    arch, _ = split_model_name_tag(name)
    if not timm.is_model(arch):
        raise ValueError(f'{name!r} is not a registered model. Run `timm-deluge list` for the model names.')
    model = timm.create_model(name, **kwargs)
    if not isinstance(model, DelugeNet):
        raise ValueError(
            f'{name!r} is a {type(model).__name__}, not a model of the DelugeNet family. Run `timm-deluge list`.')

    num_params = sum(p.numel() for p in model.parameters())
    cldcs = [m for m in model.modules() if isinstance(m, CrossLayerDepthwiseConv)]
    cross_layer_params = sum(p.numel() for m in cldcs for p in m.parameters())
    cross_layer_weight_params = sum(m.weight.numel() for m in cldcs)

    stages = []
    for i, stage in enumerate(model.stages):
        blocks = _stage_blocks(stage)
        info = model.feature_info[i + 1]
        stages.append(StageSummary(
            layers=len(blocks), width=blocks[0].conv1.out_channels, channels=info['num_chs'],
            reduction=info['reduction']))
    num_layers = sum(s.layers for s in stages)

    # The model's in_chans, not the configuration's, because in_chans may be overridden.
    input_size = (model.in_chans, *model.pretrained_cfg['input_size'][1:])
    if img_size:
        input_size = (model.in_chans, img_size, img_size)
    macs = count_multiply_adds(model, input_size) if multiply_adds else None

    cfgs = get_arch_pretrained_cfgs(arch)
    tags = [tagged.split('.', 1)[1] for tagged in cfgs if '.' in tagged]
    tags_with_weights = [
        tagged.split('.', 1)[-1] for tagged, cfg in cfgs.items() if cfg.has_weights or cfg.state_dict is not None]
    default_cfg = get_pretrained_cfg(arch)
    return ModelSummary(
        name=name,
        model_class=type(model).__name__,
        num_params=num_params,
        cross_layer_params=cross_layer_params,
        cross_layer_weight_params=cross_layer_weight_params,
        multiply_adds=macs,
        input_size=input_size,
        # Depth as the DelugeNet names count it: three convolutions per composite layer, plus stem and classifier.
        depth=3 * num_layers + 2,
        num_layers=num_layers,
        stages=stages,
        feature_info=[dict(f) for f in model.feature_info],
        pretrained_tags=tags,
        default_tag=default_cfg.tag if default_cfg is not None else None,
        tags_with_weights=tags_with_weights,
    )


def format_summary(summary: ModelSummary) -> str:
    """Format a summary as aligned text for a terminal."""
    lines = [f'{summary.name} ({summary.model_class})']

    def row(key: str, value: str) -> None:
        lines.append(f'  {key + ":":<22}{value}')

    row('parameters', f'{summary.num_params:,}')
    size = 'x'.join(str(s) for s in summary.input_size)
    if summary.multiply_adds is None:
        row('multiply-adds', 'not counted')
    else:
        row('multiply-adds', f'{summary.multiply_adds / 1e9:.3f} G at {size} (conv + linear, fvcore)')
    unit = 'composite layers' if summary.cross_layer_params else 'residual blocks'
    row('depth', f'{summary.depth} (3 x {summary.num_layers} {unit} + stem + classifier)')
    row('stages', f'{len(summary.stages)}: {unit}, bottleneck width n, output channels 2n, stride')
    for i, stage in enumerate(summary.stages):
        lines.append(
            f'    stage {i + 1}: {stage.layers:>3} layers  n={stage.width:<4} channels={stage.channels:<5} '
            f'stride={stage.reduction}')
    row('feature_info', ', '.join(f"{f['module']} (stride {f['reduction']}, {f['num_chs']} ch)"
                                  for f in summary.feature_info))
    if summary.pretrained_tags:
        tags = ', '.join(t + (' (default)' if t == summary.default_tag else '') for t in summary.pretrained_tags)
    else:
        tags = 'none'
    weights = ', '.join(summary.tags_with_weights) if summary.tags_with_weights else 'none published'
    row('pretrained tags', f'{tags} (weights: {weights})')
    if summary.cross_layer_params:
        share = (
            f'{summary.cross_layer_params:,} weights and biases = {100 * summary.cross_layer_share:.2f}% of the '
            f'model ({100 * summary.cross_layer_weight_params / summary.num_params:.2f}% weights only)')
    else:
        share = 'none: this model has no cross-layer depthwise convolutions'
    row('cross-layer params', share)
    return '\n'.join(lines)


def list_family(pattern: str = FAMILY_PATTERN, include_tags: bool = False) -> List[str]:
    """List registered models matching ``pattern`` with ``timm.list_models``."""
    return timm.list_models(pattern, include_tags=include_tags)
