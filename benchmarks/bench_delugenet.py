#!/usr/bin/env python3
"""Measure DelugeNet speed and training memory against timm's ResNets on the CPU, and write docs/benchmarks.md.

Every throughput comparison runs in one process with interleaved repeats: each repeat times one step of every
model in turn, starting from a different model each repeat, so that slow phases of a shared machine hit all
models alike. A ratio is the median over repeats of the per-repeat ratio of two models' throughputs.

Run from the repository root::

    python benchmarks/bench_delugenet.py                # full run, writes docs/benchmarks.md
    python benchmarks/bench_delugenet.py --quick        # 2 repeats and fewer models, prints only
"""
import argparse
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

import timm
import timm_deluge  # noqa: F401  registers the delugenet_* models with timm
from timm_deluge.models.delugenet import DelugeStage

IMAGENET_MODELS = ['delugenet_92', 'delugenet_104', 'delugenet_122', 'resnetv2_101', 'resnetv2_152', 'resnet200']
# timm's ImageNet CNNs shrink a 32 x 32 input to 1 x 1, so the CIFAR references are picked by their
# multiply-adds at 32 x 32, counted by fvcore. resnet50 has 0.084 G against 0.071 G for delugenet_56_cifar, and
# regnetx_320 has 0.649 G against 0.692 G for delugenet_146_cifar.
CIFAR_MODELS = [
    'delugenet_56_cifar', 'delugenet_146_cifar', 'delugenet_218_cifar', 'delugenet_146_wide_cifar',
    'resnet50', 'regnetx_320',
]
QUICK_IMAGENET_MODELS = ['delugenet_92', 'delugenet_122', 'resnetv2_101', 'resnetv2_152']
QUICK_CIFAR_MODELS = ['delugenet_146_cifar', 'regnetx_320']

# (DelugeNet, reference) pairs whose ratios the summary prints; other pairs appear in the ratio tables only.
KEY_PAIRS = [
    ('delugenet_92', 'resnetv2_101'),
    ('delugenet_104', 'resnetv2_101'),
    ('delugenet_122', 'resnetv2_152'),
    ('delugenet_122', 'resnet200'),
    ('delugenet_56_cifar', 'resnet50'),
    ('delugenet_146_cifar', 'regnetx_320'),
    ('delugenet_218_cifar', 'regnetx_320'),
    ('delugenet_146_wide_cifar', 'regnetx_320'),
]

# Acceptance targets: (metric, DelugeNet, reference, minimum ratio). Memory ratios are reference / DelugeNet.
TARGETS = [
    ('inference', 'delugenet_122', 'resnetv2_152', 1.5),
    ('inference', 'delugenet_92', 'resnetv2_101', 1.3),
    ('train', 'delugenet_122', 'resnetv2_152', 1.3),
    ('memory', 'delugenet_122', 'resnetv2_152', 1.0),
]

# Stages measured for the stored-activation table: composite layers, bottleneck width, map size, batch size.
ACTIVATION_DEPTHS = (2, 4, 8, 16, 32)
ACTIVATION_WIDTH = 32
ACTIVATION_SIZE = 16
ACTIVATION_BATCH = 4


@dataclass
class Group:
    """Models compared at one input size."""
    title: str
    models: List[str]
    img_size: int


@dataclass
class Timings:
    """Per-repeat step times in seconds of every model of a group, in one mode."""
    batch_size: int
    seconds: Dict[str, List[float]] = field(default_factory=dict)

    def throughput(self, name: str) -> float:
        """Median images per second."""
        return self.batch_size / statistics.median(self.seconds[name])

    def ratio(self, name: str, reference: str) -> float:
        """Median over repeats of throughput(name) / throughput(reference)."""
        return statistics.median(r / t for t, r in zip(self.seconds[name], self.seconds[reference]))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=7, help='Timed inference steps per model (default 7).')
    parser.add_argument(
        '--train-repeats', type=int, default=5, help='Timed training steps per model (default 5).')
    parser.add_argument('--warmup', type=int, default=2, help='Untimed steps per model and mode (default 2).')
    parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads value (default 2).')
    parser.add_argument(
        '--models', default='',
        help='Comma-separated subset of the default models to run; a group with no model left is skipped.')
    parser.add_argument(
        '--quick', action='store_true',
        help='2 repeats of each mode and only delugenet_92/122 against resnetv2_101/152 and '
             'delugenet_146_cifar against regnetx_320; prints without writing the docs page.')
    parser.add_argument(
        '--channels-last', action='store_true', help='Run every model and input in channels_last memory format.')
    parser.add_argument('--infer-batch', type=int, default=8, help='Inference batch size (default 8).')
    parser.add_argument('--train-batch', type=int, default=16, help='Training-step batch size (default 16).')
    parser.add_argument(
        '--skip', default='', help='Comma-separated parts to skip: inference, train, memory, activations.')
    parser.add_argument(
        '--profile', default='',
        help='Comma-separated models to profile with torch.profiler (self CPU time per operator group, one '
             'inference and one training step each); prints the table and exits.')
    parser.add_argument(
        '--output', default='docs/benchmarks.md',
        help="Markdown page to write (default docs/benchmarks.md); '' prints only.")
    return parser.parse_args(argv)


def build_groups(args: argparse.Namespace) -> List[Group]:
    """Return the model groups selected by ``--quick`` and ``--models``."""
    imagenet = QUICK_IMAGENET_MODELS if args.quick else IMAGENET_MODELS
    cifar = QUICK_CIFAR_MODELS if args.quick else CIFAR_MODELS
    if args.models:
        requested = [m.strip() for m in args.models.split(',') if m.strip()]
        unknown = [m for m in requested if m not in IMAGENET_MODELS + CIFAR_MODELS]
        if unknown:
            raise SystemExit(
                f'--models lists {unknown}, which are not benchmark models. Choose from '
                f'{IMAGENET_MODELS + CIFAR_MODELS}.')
        imagenet = [m for m in IMAGENET_MODELS if m in requested]
        cifar = [m for m in CIFAR_MODELS if m in requested]
    groups = []
    if imagenet:
        groups.append(Group('ImageNet models, 224 x 224', imagenet, 224))
    if cifar:
        groups.append(Group('CIFAR models against timm CNNs, 32 x 32', cifar, 32))
    return groups


def create(name: str, img_size: int, channels_last: bool) -> nn.Module:
    """Create a randomly initialised model; CIFAR-size references get 100 classes like the CIFAR models."""
    kwargs = {'num_classes': 100} if img_size == 32 else {}
    model = timm.create_model(name, **kwargs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def count_multiply_adds(model: nn.Module, img_size: int) -> float:
    """Return the multiply-adds of one image that fvcore counts (convolutions, linear and matrix products)."""
    with warnings.catch_warnings():
        # fvcore's import and its counting call torch.jit, which torch 2.14 marks deprecated.
        warnings.simplefilter('ignore', FutureWarning)
        from fvcore.nn import FlopCountAnalysis
        analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, img_size, img_size))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return float(analysis.total())


def make_input(batch_size: int, img_size: int, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch_size, 3, img_size, img_size)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """Return a closure running forward, cross-entropy, backward and an SGD step with momentum."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    return step


def make_infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def time_interleaved(steps: Dict[str, Callable[[], None]], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Time one call of every step per repeat, rotating the starting model, and return seconds per call."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            steps[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def measure_group(group: Group, args: argparse.Namespace, mode: str) -> Timings:
    """Measure inference or training-step times of every model in a group."""
    train = mode == 'train'
    batch_size = args.train_batch if train else args.infer_batch
    repeats = args.train_repeats if train else args.repeats
    x = make_input(batch_size, group.img_size, args.channels_last)
    steps = {}
    for name in group.models:
        model = create(name, group.img_size, args.channels_last).train(train)
        if train:
            target = torch.randint(0, model.num_classes, (batch_size,))
            steps[name] = make_train_step(model, x, target)
        else:
            steps[name] = make_infer_step(model, x)
    seconds = time_interleaved(steps, repeats, args.warmup)
    del steps
    gc.collect()
    return Timings(batch_size, seconds)


def peak_step_memory(name: str, img_size: int, batch_size: int, channels_last: bool) -> Tuple[int, int]:
    """Return the peak tensor memory of one training step, and the part of it that existed before the step.

    The numbers come from the memory timeline of ``torch.profiler`` (``profile_memory=True``): the live bytes of
    every CPU tensor (weights, momentum buffers, inputs, activations, gradients, temporaries) at each allocation
    or free. They do not depend on the malloc cache of the process, so models can be measured one after
    another in one process.
    """
    model = create(name, img_size, channels_last).train()
    x = make_input(batch_size, img_size, channels_last)
    target = torch.randint(0, model.num_classes, (batch_size,))
    step = make_train_step(model, x, target)
    step()  # creates the momentum buffers
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True,
            record_shapes=True,
            with_stack=True,
    ) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'timeline.json')
        # NOTE: torch 2.14 marks export_memory_timeline deprecated in favour of CUDA-only tools, and it is the
        # only tensor-level memory timeline for the CPU.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            prof.export_memory_timeline(path, device='cpu')
        with open(path) as f:
            _, sizes = json.load(f)
    totals = [sum(row) for row in sizes]
    return max(totals), totals[0]


def stage_saved_bytes(depth: int, width: int = 32, img_size: int = 16, batch_size: int = 4) -> int:
    """Return the bytes of unique storages that autograd saves for backward in one training-mode stage.

    A ``saved_tensors_hooks`` pack hook records each saved tensor's storage once. Parameters and buffers are
    left out, so the count is the stage's stored activations.
    """
    stage = DelugeStage(2 * width, width, depth, first_map='transition', stride=1).train()
    excluded = {t.untyped_storage().data_ptr() for t in list(stage.parameters()) + list(stage.buffers())}
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch_size, 2 * width, img_size, img_size, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = stage(x)
    out.sum().backward()
    return sum(storages.values())


# Operator groups of the --profile breakdown, by ATen operator name.
PROFILE_GROUPS = {
    'convolution': (
        'aten::mkldnn_convolution', 'aten::_slow_conv2d_forward', 'aten::convolution_backward',
        'aten::_slow_conv2d_backward', 'aten::mkldnn_convolution_backward'),
    'batch norm': (
        'aten::native_batch_norm', 'aten::native_batch_norm_backward', 'aten::_native_batch_norm_legit',
        'aten::_native_batch_norm_legit_no_training'),
    'elementwise and reductions': (
        'aten::mul', 'aten::addcmul_', 'aten::addcmul', 'aten::add_', 'aten::add', 'aten::sum', 'aten::mean',
        'aten::sub', 'aten::div', 'aten::pow', 'aten::fill_', 'aten::copy_'),
    'relu': ('aten::clamp_min_', 'aten::clamp_min', 'aten::threshold_backward', 'aten::relu_'),
    'max pool': ('aten::max_pool2d_with_indices', 'aten::max_pool2d_with_indices_backward'),
}


def profile_breakdown(names: List[str], args: argparse.Namespace) -> List[str]:
    """Profile one inference and one training step of each model and return a table of time per operator group."""
    header = ['model', 'mode', 'total (ms)'] + [f'{group} (ms)' for group in PROFILE_GROUPS] + ['other (ms)']
    rows = []
    for name in names:
        img_size = 32 if name in CIFAR_MODELS and name not in IMAGENET_MODELS else 224
        for mode in ('inference', 'train'):
            train = mode == 'train'
            batch_size = args.train_batch if train else args.infer_batch
            model = create(name, img_size, args.channels_last).train(train)
            x = make_input(batch_size, img_size, args.channels_last)
            if train:
                step = make_train_step(model, x, torch.randint(0, model.num_classes, (batch_size,)))
            else:
                step = make_infer_step(model, x)
            step()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                step()
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            times = [sum(e.self_cpu_time_total for e in events if e.key in ops) for ops in PROFILE_GROUPS.values()]
            row = [f'`{name}`', mode, f'{total / 1e3:.0f}'] + [f'{t / 1e3:.0f}' for t in times]
            rows.append(row + [f'{(total - sum(times)) / 1e3:.0f}'])
    return format_table(header, rows)


def machine_lines(args: argparse.Namespace, command: str, load_start: Tuple[float, float, float]) -> List[str]:
    model_name = platform.processor() or 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model_name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    load_end = os.getloadavg()
    return [
        f'- Date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}',
        f'- CPU: {model_name}, {os.cpu_count()} logical cores, torch.set_num_threads({args.threads})',
        f'- Software: Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}',
        f'- Load average (1, 5, 15 min) at start: {", ".join(f"{v:.2f}" for v in load_start)}; '
        f'at end: {", ".join(f"{v:.2f}" for v in load_end)}',
        f'- Command: `{command}`',
        f'- Mode: eager, float32, {"channels_last" if args.channels_last else "contiguous (NCHW)"} inputs and '
        f'weights. Inference runs in eval mode under `torch.inference_mode()`, batch {args.infer_batch}. A '
        f'training step is forward, cross-entropy, backward and SGD with momentum in train mode, batch '
        f'{args.train_batch}. Each model and mode gets {args.warmup} untimed warm-up step(s), then '
        f'{args.repeats} timed inference and {args.train_repeats} timed training repeats.',
    ]


def format_table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.repeats = args.train_repeats = 2
        args.warmup = 1
    skip = {s.strip() for s in args.skip.split(',') if s.strip()}
    invalid = skip - {'inference', 'train', 'memory', 'activations'}
    if invalid:
        raise SystemExit(f'--skip has invalid parts {sorted(invalid)}: use inference, train, memory, activations.')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.profile:
        names = [m.strip() for m in args.profile.split(',') if m.strip()]
        unknown = [m for m in names if m not in IMAGENET_MODELS + CIFAR_MODELS]
        if unknown:
            raise SystemExit(f'--profile lists {unknown}, which are not benchmark models.')
        print('\n'.join(profile_breakdown(names, args)))
        return 0
    command = 'python ' + ' '.join(shlex.quote(a) for a in [os.path.relpath(__file__)] + list(sys.argv[1:]))
    load_start = os.getloadavg()
    groups = build_groups(args)

    doc: List[str] = ['# DelugeNet benchmarks on the CPU', '']
    report: List[str] = []  # ratio lines for the summary
    results: Dict[str, Dict[str, float]] = {'inference': {}, 'train': {}, 'memory': {}}

    for group in groups:
        print(f'== {group.title}: {", ".join(group.models)}', flush=True)
        timings: Dict[str, Timings] = {}
        for mode in ('inference', 'train'):
            if mode in skip:
                continue
            start = time.perf_counter()
            timings[mode] = measure_group(group, args, mode)
            print(f'   {mode} timed in {time.perf_counter() - start:.0f} s', flush=True)

        memory: Dict[str, Tuple[int, int]] = {}
        if 'memory' not in skip:
            for name in group.models:
                memory[name] = peak_step_memory(name, group.img_size, args.train_batch, args.channels_last)
                gc.collect()

        header = ['model', 'params (M)', 'multiply-adds per image (G)']
        if 'inference' in timings:
            header.append(f'inference img/s (batch {args.infer_batch})')
        if 'train' in timings:
            header.append(f'training img/s (batch {args.train_batch})')
        if memory:
            header += ['peak training-step memory (MiB)', 'held before the step (MiB)']
        rows = []
        for name in group.models:
            model = create(name, group.img_size, False)
            params = sum(p.numel() for p in model.parameters())
            macs = count_multiply_adds(model, group.img_size)
            row = [f'`{name}`', f'{params / 1e6:.1f}', f'{macs / 1e9:.3f}']
            for mode in ('inference', 'train'):
                if mode in timings:
                    row.append(f'{timings[mode].throughput(name):.2f}')
            if memory:
                peak, before = memory[name]
                row += [f'{peak / 2**20:.0f}', f'{before / 2**20:.0f}']
            rows.append(row)

        ratio_rows = []
        for model_name, reference in KEY_PAIRS:
            if model_name not in group.models or reference not in group.models:
                continue
            row = [f'`{model_name}` / `{reference}`']
            for mode in ('inference', 'train'):
                if mode in timings:
                    ratio = timings[mode].ratio(model_name, reference)
                    results[mode][f'{model_name}/{reference}'] = ratio
                    row.append(f'{ratio:.2f}x')
                    report.append(f'{mode:9s} {model_name} / {reference}: {ratio:.2f}x')
            if memory:
                ratio = memory[reference][0] / memory[model_name][0]
                results['memory'][f'{model_name}/{reference}'] = ratio
                row.append(f'{ratio:.2f}x')
                report.append(f'memory    {reference} / {model_name} (peak training-step memory): {ratio:.2f}x')
            ratio_rows.append(row)

        doc += [f'## {group.title}', ''] + format_table(header, rows) + ['']
        if ratio_rows:
            ratio_header = ['pair']
            ratio_header += [f'{mode} speed ratio' for mode in ('inference', 'train') if mode in timings]
            if memory:
                ratio_header.append('memory ratio (reference / DelugeNet)')
            doc += format_table(ratio_header, ratio_rows) + ['']
        print('\n'.join(format_table(header, rows)), flush=True)

    if 'activations' not in skip:
        print('== stored activations of one stage', flush=True)
        act_rows = []
        previous = None
        map_bytes = ACTIVATION_BATCH * 2 * ACTIVATION_WIDTH * ACTIVATION_SIZE ** 2 * 4
        for depth in ACTIVATION_DEPTHS:
            saved = stage_saved_bytes(depth, ACTIVATION_WIDTH, ACTIVATION_SIZE, ACTIVATION_BATCH)
            per_map = saved / (depth + 1)
            growth = '' if previous is None else f'{saved / previous:.2f}x'
            # Layer k of a stage with a first map reads k maps, and those with k >= 2 have a cross-layer
            # convolution. The closing one reads all depth + 1 maps.
            per_consumer_copies = sum(range(2, depth + 1)) + depth + 1
            act_rows.append([
                str(depth), f'{saved / 2**20:.2f}', f'{per_map / 2**10:.0f}', growth,
                f'{per_consumer_copies * map_bytes / 2**20:.2f}',
            ])
            previous = saved
        act_header = ['composite layers', 'saved for backward (MiB)', 'per map of the stage (KiB)',
                      'growth from the previous row', 'normalised copies stored per consumer (MiB, computed)']
        doc += [
            '## Stored activations of one stage',
            '',
            'Bytes of the unique storages that autograd saves during a training-mode forward of one `DelugeStage`'
            f' (transition first map, width {ACTIVATION_WIDTH}, so {2 * ACTIVATION_WIDTH}-channel maps, '
            f'{ACTIVATION_SIZE} x {ACTIVATION_SIZE}, batch {ACTIVATION_BATCH}), counted with '
            '`torch.autograd.graph.saved_tensors_hooks`. Parameters and buffers are left out. Doubling the '
            'number of composite layers about doubles the bytes, so the stored activations grow linearly. '
            'The last column is computed, not measured: the normalised input copies alone that an '
            'implementation normalising per consumer, as the authors\' Lua code does, would store. It grows '
            'quadratically.',
            '',
        ] + format_table(act_header, act_rows) + ['']
        print('\n'.join(format_table(act_header, act_rows)), flush=True)

    target_lines = []
    for metric, model_name, reference, minimum in TARGETS:
        key = f'{model_name}/{reference}'
        if key not in results[metric]:
            continue
        ratio = results[metric][key]
        status = 'met' if ratio >= minimum else 'NOT met'
        description = (f'peak training memory, {reference} / {model_name}' if metric == 'memory'
                       else f'{metric} throughput, {model_name} / {reference}')
        target_lines.append(f'- {description}: {ratio:.2f}x, target at least {minimum:.1f}x: {status}')

    print('== median ratios')
    print('\n'.join(report))
    if target_lines:
        print('== targets')
        print('\n'.join(target_lines))

    doc_head = [
        '# DelugeNet benchmarks on the CPU',
        '',
        'Throughput of DelugeNets against timm\'s ResNets, measured by `benchmarks/bench_delugenet.py` in one '
        'process. Each repeat times one step of every model in turn, starting from a different model each '
        'repeat, and a ratio is the median over repeats of the per-repeat throughput ratio. A speed ratio '
        'above 1 means the DelugeNet is faster.',
        '',
        'The DelugeNet implementation measured here normalises each map of a stage once, with statistics shared '
        'by every consumer. In eval mode it folds those normalisations and the BatchNorm after each '
        'cross-layer sum into the cross-layer scales, and the BatchNorms after conv1 and conv2 into those '
        'convolutions. In training each consumer folds the batch statistics into its scales and reads the raw '
        'maps, so no normalised copy is stored. The cross-layer sum and the batch statistics have autograd '
        'functions whose backward passes make one full-size temporary per input.',
        '',
        'Peak training-step memory is the maximum of the live CPU tensor bytes during one training step after '
        'a warm-up step, from the memory timeline of `torch.profiler` (`profile_memory=True`, '
        '`export_memory_timeline`). It counts weights, momentum buffers, inputs, activations, gradients and '
        'temporaries, and does not depend on the malloc cache of the process. The next column is the part that '
        'exists before the step: weights, momentum buffers, BatchNorm buffers and inputs. The memory ratio is '
        'the reference\'s peak over the DelugeNet\'s, so above 1 means the DelugeNet needs less.',
        '',
        '## Machine and command',
        '',
    ] + machine_lines(args, command, load_start) + ['']
    if target_lines:
        doc_head += ['## Targets', ''] + target_lines + ['']
    doc = doc_head + doc[2:]

    if args.output and not args.quick:
        os.makedirs(os.path.dirname(args.output) or '.', exist_ok=True)
        tmp = args.output + '.tmp'
        with open(tmp, 'w') as f:
            f.write('\n'.join(doc).rstrip() + '\n')
        os.replace(tmp, args.output)
        print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
