"""The ``timm-deluge`` command: parses arguments and dispatches to the package's functions.

Each subcommand is a function ``_add_NAME(subparsers)`` that adds its parser and sets ``handler`` to a function
taking the parsed arguments and returning an exit status. A new subcommand adds such a function to ``_COMMANDS``.
Handlers import what they use, so that a subcommand's optional dependencies (matplotlib, fvcore) load only when
it runs.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, List, Optional

__all__ = ['main', 'build_parser']


def _run_list(args: argparse.Namespace) -> int:
    from timm_deluge.analysis import list_family

    for name in list_family(args.filter, include_tags=args.include_tags):
        print(name)
    return 0


def _add_list(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'list', help='list the registered models of the family, one per line',
        description='List registered models as timm.list_models does, one name per line.')
    parser.add_argument(
        'filter', nargs='?', default='delugenet*',
        help="shell-style wildcard on model names (default: 'delugenet*', the DelugeNets and their baselines)")
    parser.add_argument(
        '--include-tags', action='store_true',
        help='list every pretrained configuration as NAME.TAG, such as delugenet_146_cifar.cifar10')
    parser.set_defaults(handler=_run_list)


def _run_info(args: argparse.Namespace) -> int:
    from timm_deluge.analysis import format_summary, summarize_model

    kwargs = {}
    if args.num_classes is not None:
        kwargs['num_classes'] = args.num_classes
    if args.in_chans is not None:
        kwargs['in_chans'] = args.in_chans
    summary = summarize_model(args.model, multiply_adds=not args.no_macs, img_size=args.img_size, **kwargs)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'info', help='print parameters, multiply-adds, depth and structure of a model',
        description=(
            'Print, for a registered model: parameters, conv + linear multiply-adds (fvcore) at its input size, '
            'depth, per-stage layer counts and widths, feature_info strides, pretrained tags and the share of '
            'parameters in cross-layer depthwise convolutions.'))
    parser.add_argument('model', help='registered model name, optionally with a tag, e.g. delugenet_146_cifar.cifar10')
    parser.add_argument('--img-size', type=int, default=None, help='square input size in pixels for multiply-adds')
    parser.add_argument('--num-classes', type=int, default=None, help='classifier outputs (default: from the tag)')
    parser.add_argument('--in-chans', type=int, default=None, help='input image channels (default: 3)')
    parser.add_argument('--no-macs', action='store_true', help='skip the multiply-add count, which traces the model')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.set_defaults(handler=_run_info)


def _run_connections(args: argparse.Namespace) -> int:
    from timm_deluge.analysis import load_connections, plot_connections, write_connections_csv

    out = Path(args.out)
    csv_path = Path(args.csv) if args.csv else out.with_suffix('.csv')
    if csv_path == out:
        raise ValueError(f'--csv {str(csv_path)!r} is the same file as --out. Choose another name.')
    for path in (out, csv_path):
        if path.exists() and not args.overwrite:
            raise FileExistsError(f'Output {str(path)!r} already exists. Remove it, or pass --overwrite.')

    connections, description = load_connections(args.source, model_name=args.model, use_ema=not args.no_ema)
    title = args.title or description
    plot_connections(connections, out, title=title, heat_map=args.heat_map, overwrite=args.overwrite, dpi=args.dpi)
    write_connections_csv(connections, csv_path, overwrite=args.overwrite)
    print(f'Loaded {description}.')
    for conn in connections:
        if conn.kind == 'layer':
            continue
        normalised = conn.normalised
        if min(normalised) == max(normalised):
            print(f'{conn.consumer}: {len(normalised)} inputs, all of equal strength')
        else:
            strongest = conn.input_labels[normalised.index(max(normalised))]
            weakest = conn.input_labels[normalised.index(min(normalised))]
            print(f'{conn.consumer}: {len(normalised)} inputs, strongest {strongest}, weakest {weakest} '
                  f'({min(normalised):.2f})')
    print(f'Wrote {out} and {csv_path}.')
    return 0


def _add_connections(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'connections', help='plot the layer-wise L2 norms of the cross-layer weights',
        description=(
            'Plot, for each block transition and for the classifier, the L2 norm over channels of each input\'s '
            'cross-layer depthwise convolution weights, divided by the largest of that convolution. Also write '
            'the norms of every cross-layer convolution as CSV.'))
    parser.add_argument(
        'source',
        help='registered model name (fresh weights), timm checkpoint (.pth, .pth.tar), .safetensors file, '
             'hf-hub:ORG/NAME or local-dir:FOLDER')
    parser.add_argument('--out', required=True, help='image file to write, in the format of its suffix (.png)')
    parser.add_argument('--csv', default=None, help='CSV file to write (default: --out with the suffix .csv)')
    parser.add_argument(
        '--model', default=None,
        help="architecture of a checkpoint file (required for .safetensors, else read from the checkpoint's 'arch')")
    parser.add_argument(
        '--heat-map', action='store_true',
        help='add one heat map per block of every composite layer\'s cross-layer weights')
    parser.add_argument('--no-ema', action='store_true', help='use the state_dict of a checkpoint, not its EMA weights')
    parser.add_argument('--title', default=None, help='figure title (default: the architecture and its weights)')
    parser.add_argument('--dpi', type=int, default=150, help='resolution of raster images in dots per inch')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
    parser.set_defaults(handler=_run_connections)


_COMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [_add_list, _add_info, _add_connections]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog='timm-deluge', description='DelugeNets for timm: list, summarise and inspect models.')
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line and return its exit status: 0 on success, 1 on an invalid input, 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as e:
        print(f'timm-deluge {args.command}: error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
