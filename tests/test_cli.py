"""Tests of the ``timm-deluge`` command line: the installed console script and ``main`` in process."""
import csv
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import timm
from timm.models import save_for_hf

import timm_deluge  # noqa: F401
from timm_deluge.cli import main

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def run_script(args: List[str], env: dict = None) -> subprocess.CompletedProcess:
    """Run the installed ``timm-deluge`` console script."""
    script = shutil.which('timm-deluge')
    assert script is not None, 'timm-deluge is not installed: run pip install -e .'
    full_env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.run([script, *args], capture_output=True, text=True, env=full_env, timeout=300)


def trained_like_model(seed: int = 0) -> torch.nn.Module:
    """A 1-channel, 10-class delugenet_56_cifar with random cross-layer weights, like a Fashion-MNIST checkpoint."""
    model = timm.create_model('delugenet_56_cifar', num_classes=10, in_chans=1).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == 'CrossLayerDepthwiseConv':
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator))
    return model


def read_csv(path: Path) -> List[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def normalised_column_norms(weight: torch.Tensor) -> np.ndarray:
    array = weight.detach().double().numpy()
    norms = np.sqrt((array ** 2).sum(axis=0))
    return norms / norms.max()


def test_script_list():
    result = run_script(['list'])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == timm.list_models('delugenet*')


def test_list_tags(capsys):
    assert main(['list', 'delugenet_146_cifar', '--include-tags']) == 0
    assert capsys.readouterr().out.splitlines() == ['delugenet_146_cifar.cifar10', 'delugenet_146_cifar.cifar100']


def test_info_text(capsys):
    assert main(['info', 'delugenet_146_cifar.cifar10']) == 0
    out = capsys.readouterr().out
    lines = {line.split(':', 1)[0].strip(): line.split(':', 1)[1].strip() for line in out.splitlines()[1:]}
    assert lines['parameters'] == '6,686,250'
    assert lines['depth'].startswith('146 ')
    assert lines['multiply-adds'].startswith('0.69')
    assert lines['stage 2'].split()[:1] == ['16']
    assert 'stages.2 (stride 4, 256 ch)' in lines['feature_info']
    assert lines['pretrained tags'].startswith('cifar100 (default), cifar10')
    assert lines['cross-layer params'].startswith('209,280 ')


def test_info_json(capsys):
    assert main(['info', 'delugenet_56_cifar', '--json', '--no-macs', '--num-classes', '10']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['depth'] == 56
    assert summary['multiply_adds'] is None
    assert [s['layers'] for s in summary['stages']] == [3, 6, 9]
    assert [s['width'] for s in summary['stages']] == [16, 32, 64]
    model = timm.create_model('delugenet_56_cifar', num_classes=10)
    assert summary['num_params'] == sum(p.numel() for p in model.parameters())


def test_connections_checkpoint(tmp_path, capsys):
    model = trained_like_model()
    checkpoint = tmp_path / 'model_best.pth.tar'
    torch.save({'arch': 'delugenet_56_cifar', 'epoch': 3, 'state_dict': model.state_dict()}, checkpoint)
    out = tmp_path / 'connections.png'
    assert main(['connections', str(checkpoint), '--out', str(out), '--heat-map']) == 0
    stdout = capsys.readouterr().out
    assert 'weights from model_best.pth.tar' in stdout

    assert out.read_bytes()[:8] == PNG_MAGIC
    image = imread(out)
    assert image.shape[0] > 500
    assert image.shape[1] > 500
    rows = read_csv(tmp_path / 'connections.csv')
    for module_name in ('stages.0.cldc', 'stages.1.cldc', 'stages.2.cldc', 'stages.2.layers.8.cldc'):
        values = [float(r['normalised_l2_norm']) for r in rows if r['module'] == module_name]
        weight = model.get_submodule(module_name).weight
        np.testing.assert_allclose(values, normalised_column_norms(weight), rtol=1e-6)


def test_connections_hf_hub(tmp_path):
    model = trained_like_model(seed=3)
    export = tmp_path / 'export'
    save_for_hf(model, str(export), safe_serialization=True)
    # A Hugging Face cache as huggingface_hub lays it out, read with the Hub offline.
    commit = '0' * 40
    repo_dir = tmp_path / 'hub' / 'models--local--delugenet-test'
    (repo_dir / 'refs').mkdir(parents=True)
    (repo_dir / 'refs' / 'main').write_text(commit)
    shutil.copytree(export, repo_dir / 'snapshots' / commit)
    out = tmp_path / 'hub.png'
    env = {'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(tmp_path / 'hub')}
    result = run_script(['connections', 'hf-hub:local/delugenet-test', '--out', str(out)], env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC
    rows = read_csv(tmp_path / 'hub.csv')
    values = [float(r['normalised_l2_norm']) for r in rows if r['consumer'] == 'classifier']
    np.testing.assert_allclose(values, normalised_column_norms(model.stages[2].cldc.weight), rtol=1e-6)


def test_connections_safetensors_needs_model(tmp_path, capsys):
    import safetensors.torch

    path = tmp_path / 'weights.safetensors'
    safetensors.torch.save_file(trained_like_model().state_dict(), str(path))
    assert main(['connections', str(path), '--out', str(tmp_path / 'a.png')]) == 1
    assert 'weights.safetensors' in capsys.readouterr().err
    assert main(['connections', str(path), '--model', 'delugenet_56_cifar', '--out', str(tmp_path / 'a.png')]) == 0
    assert (tmp_path / 'a.csv').is_file()


@pytest.mark.parametrize('source, message', [
    ('missing/run/last.pth.tar', 'missing/run/last.pth.tar'),
    ('delugenet_57_cifar', 'delugenet_57_cifar'),
    ('delugenet_baseline_56_1x1_cifar', 'no cross-layer depthwise convolutions'),
])
def test_connections_bad_source(tmp_path, capsys, source, message):
    out = tmp_path / 'plot.png'
    assert main(['connections', source, '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('timm-deluge connections: error: ')
    assert message in err
    assert source in err
    assert not out.exists()


def test_connections_keeps_existing_output(tmp_path, capsys):
    csv_path = tmp_path / 'plot.csv'
    csv_path.write_text('keep')
    out = tmp_path / 'plot.png'
    assert main(['connections', 'delugenet_56_cifar', '--out', str(out)]) == 1
    assert 'plot.csv' in capsys.readouterr().err
    assert csv_path.read_text() == 'keep'
    assert not out.exists()
    assert main(['connections', 'delugenet_56_cifar', '--out', str(out), '--overwrite']) == 0
    assert read_csv(csv_path)[0]['normalised_l2_norm'] == '1'


def test_usage_error_exit_code():
    with pytest.raises(SystemExit) as info:
        main(['connections', 'delugenet_56_cifar'])
    assert info.value.code == 2
