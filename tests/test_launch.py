"""timm_deluge.launch against stand-in scripts named like timm's, in subprocesses as a user runs them."""
import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path


# A stand-in for timm's train.py: writes its command line and the timm module it imported to a JSON file.
STANDIN_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import timm
    result = {
        'name': __name__,
        'argv': sys.argv[1:],
        'timm_version': timm.__version__,
        'timm_file': timm.__file__,
        'registered': 'delugenet_56_cifar' in timm.list_models('delugenet*'),
    }
    with open(os.environ['STANDIN_OUTPUT'], 'w') as f:
        json.dump(result, f)
''')

# A stand-in that wraps a CPU model with DistributedDataParallel the way timm's train.py does, with device_ids.
DDP_STANDIN_SCRIPT = textwrap.dedent('''
    import os
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)
    model = DistributedDataParallel(torch.nn.Linear(4, 2), device_ids=[torch.device('cpu')])
    model(torch.randn(8, 4)).sum().backward()
    grads = [torch.zeros_like(model.module.weight.grad) for _ in range(world)]
    dist.all_gather(grads, model.module.weight.grad)
    print(f'rank {rank} of {world}: gradients equal {all(torch.equal(g, grads[0]) for g in grads)}', flush=True)
    dist.destroy_process_group()
''')


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(GLOO_SOCKET_IFNAME='lo', OMP_NUM_THREADS='1', **extra)
    return env


def _launch(args, cwd: Path, env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'timm_deluge.launch', *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_launch_runs_script(tmp_path):
    scripts = tmp_path / 'pytorch-image-models'
    scripts.mkdir()
    (scripts / 'train.py').write_text(STANDIN_SCRIPT)
    # A timm source folder beside the script, as in a pytorch-image-models checkout, must not be imported.
    (scripts / 'timm').mkdir()
    (scripts / 'timm' / '__init__.py').write_text('raise ImportError("source timm beside the script imported")\n')
    output = tmp_path / 'result.json'

    proc = _launch([str(scripts / 'train.py'), '--model', 'delugenet_56_cifar', '-b', '2'], tmp_path,
                   _env(STANDIN_OUTPUT=str(output)))

    assert proc.returncode == 0, proc.stderr
    result = json.loads(output.read_text())
    assert result['name'] == '__main__'
    assert result['argv'] == ['--model', 'delugenet_56_cifar', '-b', '2']
    assert result['timm_version'] == version('timm')
    assert not result['timm_file'].startswith(str(scripts))
    assert result['registered']
    assert f'timm {version("timm")}' in proc.stderr


def test_launch_scripts_dir(tmp_path):
    scripts = tmp_path / 'checkout'
    scripts.mkdir()
    (scripts / 'validate.py').write_text(STANDIN_SCRIPT)
    output = tmp_path / 'result.json'

    proc = _launch(['validate.py', '--help'], tmp_path,
                   _env(STANDIN_OUTPUT=str(output), TIMM_SCRIPTS_DIR=str(scripts)))

    assert proc.returncode == 0, proc.stderr
    assert json.loads(output.read_text())['argv'] == ['--help']


def test_launch_missing_script(tmp_path):
    proc = _launch([str(tmp_path / 'train.py')], tmp_path, _env())

    assert proc.returncode == 2
    assert 'not found' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_launch_rejects_other_script(tmp_path):
    other = tmp_path / 'my_train.py'
    other.write_text('raise SystemExit("must not run")\n')

    proc = _launch([str(other)], tmp_path, _env())

    assert proc.returncode == 2
    assert 'not one of timm' in proc.stderr
    assert 'must not run' not in proc.stderr


def test_launch_without_script(tmp_path):
    proc = _launch([], tmp_path, _env())

    assert proc.returncode == 2
    assert 'usage' in proc.stderr


def test_ddp_device_ids_rejected_without_launcher(tmp_path):
    # Establishes the PyTorch behaviour the launcher corrects: device_ids with a CPU module raise an error.
    script = tmp_path / 'train.py'
    script.write_text(DDP_STANDIN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '1', str(script)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)

    assert proc.returncode != 0
    assert 'device_ids' in proc.stderr


def test_launch_torchrun_ddp_cpu(tmp_path):
    script = tmp_path / 'train.py'
    script.write_text(DDP_STANDIN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
         '-m', 'timm_deluge.launch', str(script)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'rank 0 of 2: gradients equal True' in proc.stdout
    assert 'rank 1 of 2: gradients equal True' in proc.stdout
