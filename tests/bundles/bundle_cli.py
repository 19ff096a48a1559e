"""Run ``python -m monai.bundle`` verbs on a copy of a bundle, as a user would (shared by the bundle tests)."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
SCHEMA = BUNDLES / "meta_schema.json"
# the 3D bundles (kidney CT, brain MRI) on tiny settings: the network and patch size, then a two-epoch demo training
NET_3D = ["--roi_size", "[32,32,32]", "--pixdim", "[6,6,6]", "--network_def#filters", "[4,4,8,8,16]"]
TINY_3D = ["--num_epochs", "2", "--val_interval", "1", "--demo_cases", "5", "--batch_size", "2", "--num_samples", "1",
           *NET_3D]


def copy_bundle(name: str, destination: Path) -> Path:
    """A fresh copy of the bundle's shareable files (configs, docs, licence) in ``destination``."""
    root = destination / name
    for part in ("configs", "docs"):
        shutil.copytree(BUNDLES / name / part, root / part)
    shutil.copy(BUNDLES / name / "LICENSE", root / "LICENSE")
    return root


_ERROR_LINE = re.compile(r"Error|Exception|terminate called|what\(\)|Traceback|Aborted")


def _tail(result: subprocess.CompletedProcess) -> str:
    """
    The last 40 lines of the output, after up to 20 earlier lines that look like errors: torchrun ends with its own
    summary of the ranks' exit codes, which would otherwise push out what the failing rank said.
    """
    lines = ((result.stdout or "") + (result.stderr or "")).splitlines()
    earlier = [line for line in lines[:-40] if _ERROR_LINE.search(line)][-20:]
    return "\n".join([*earlier, *(["..."] if earlier else []), *lines[-40:]])


def _start_python(root: Path, args: Sequence[str], env: dict | None = None) -> subprocess.Popen:
    """``python <args>`` started in ``root`` in its own process group, output captured."""
    return subprocess.Popen([sys.executable, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _finish(process: subprocess.Popen, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """Wait up to ``timeout`` seconds for a process of :func:`_start_python`; past that, kill its group and fail."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        message = f"python {' '.join(args)} did not finish within {timeout:.0f} s:\n{_tail(result)}"
        raise AssertionError(message) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_python(root: Path, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """
    ``python <args>`` in ``root``, output captured. The command runs in its own process group, and all of it is
    killed when ``timeout`` (seconds) runs out: torchrun's ranks and DataLoader workers hold the output pipes, so
    killing only the direct child would leave the test waiting for them forever.
    """
    return _finish(_start_python(root, args, env), args, timeout)


def _succeeded(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """``result`` itself if the command exited with 0; else the test fails with ``what`` and the output tail."""
    if result.returncode != 0:
        raise AssertionError(f"{what} failed with code {result.returncode}:\n{_tail(result)}")
    return result


def monai_bundle(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in the bundle folder; fails the test with the output tail on error."""
    result = run_python(root, "-m", "monai.bundle", *args, timeout=timeout)
    return _succeeded(result, f"monai.bundle {' '.join(args)}")


def monai_bundles_at_once(*commands: tuple[Path, Sequence[str]],
                          timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """
    Several independent ``python -m monai.bundle <args>`` commands, ``(bundle folder, args)`` each, run at the same
    time with one OpenMP thread each; their results in the same order. The test fails with a command's output tail if
    it fails, and with every command killed if ``timeout`` (seconds, for all of them together) runs out.

    Most of a short command's seconds go to importing torch and MONAI on one core: two such starts overlap on a
    2-core machine instead of queueing. Only for commands that neither read nor write what another one writes.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = [(_start_python(root, ["-m", "monai.bundle", *args], env), args) for root, args in commands]
    deadline = time.monotonic() + timeout
    try:
        results = [_finish(process, ["-m", "monai.bundle", *args], max(deadline - time.monotonic(), 0.1))
                   for process, args in started]
    finally:
        for process, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    return [_succeeded(result, f"monai.bundle {' '.join(args)}") for result, (_, args) in zip(results, started)]


def torchrun_bundle(root: Path, nproc: int, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node <nproc> -m monai.bundle <args>`` (gloo, CPU) in the bundle folder."""
    result = run_python(root, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
                        "monai.bundle", *args, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return _succeeded(result, f"torchrun monai.bundle {' '.join(args)}")


def configs(*names: str) -> str:
    """The ``--config_file`` value for one or several configs (overlays merge left to right)."""
    paths = [f"configs/{n}" for n in names]
    return paths[0] if len(paths) == 1 else "[" + ",".join(f"'{p}'" for p in paths) + "]"


def schema_md5() -> str:
    return hashlib.md5(SCHEMA.read_bytes()).hexdigest()


def export_pruned_torchscript(root: Path, *overrides: str):
    """Check ``pruned_network_def`` with ``verify_net_in_out``, export it with ``ckpt_export`` and load the result.

    Every bundle must pass this from its own folder with only the CLI: it is how a pruned checkpoint reaches the
    tools (and collaborators) that know nothing about pruning records.
    """
    import torch

    common = ["--meta_file", "configs/metadata.json", "--config_file", configs("inference.json"), *overrides]
    # independent (one reads model.pt, the other reads it and writes model.ts): run together
    monai_bundles_at_once(
        (root, ["verify_net_in_out", "pruned_network_def", *common]),
        (root, ["ckpt_export", "pruned_network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
                "--key_in_ckpt", "model", *common]),
    )
    return torch.jit.load(str(root / "models" / "model.ts"))


def _override_values(overrides: Sequence[str]) -> dict:
    """``--key value`` pairs of a ``monai.bundle`` command line as the values the verb gets: Python literals (lists,
    numbers) parsed, anything else kept as the string."""
    if len(overrides) % 2 or not all(key.startswith("--") for key in overrides[::2]):
        raise ValueError(f"overrides must be --key value pairs, got {list(overrides)}")
    values = {}
    for key, text in zip(overrides[::2], overrides[1::2]):
        try:
            values[key[2:]] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[key[2:]] = text
    return values


def verify_net_in_out_in_process(root: Path, net_id: str, *overrides: str) -> None:
    """``verify_net_in_out <net_id>`` of the bundle in ``root`` (inference config, metadata, command-line style
    ``overrides``) through monai.bundle's Python API, in this process: the same check as the command, without a
    second start of torch and MONAI, where the command itself is run elsewhere on the same bundle."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id=net_id, meta_file=str(root / "configs" / "metadata.json"),
                      config_file=str(root / "configs" / "inference.json"), bundle_root=str(root),
                      **_override_values(overrides))


def assert_inference_fails_with_one_line(root: Path, input_dir: Path, message: str, *overrides: str) -> None:
    """Inference on ``input_dir`` stops with ``ERROR: <message>`` on one line, and no traceback."""
    result = run_python(root, "-m", "monai.bundle", "run", "--config_file", configs("inference.json"), "--input_dir",
                        str(input_dir), *overrides, timeout=300)
    assert result.returncode != 0
    assert f"ERROR: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def assert_missing_input_folder_is_one_line(root: Path, missing: Path, *overrides: str) -> None:
    """Inference on a folder that does not exist stops with one ``ERROR:`` line naming it, and no traceback."""
    assert_inference_fails_with_one_line(root, missing, f"input folder not found: {missing}", *overrides)


def verify_metadata_and_network(root: Path, *overrides: str) -> None:
    """``verify_metadata`` against the offline schema on the command line, and ``verify_net_in_out`` of the unpruned
    ``network_def`` in process (the ``verify_net_in_out`` command itself runs on ``pruned_network_def`` in
    :func:`export_pruned_torchscript`, which every bundle's tests call)."""
    monai_bundle(root, "verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", str(SCHEMA),
                 "--hash_val", schema_md5())
    verify_net_in_out_in_process(root, "network_def", *overrides)


def save_untrained_model(root: Path, overrides: dict | None = None) -> Path:
    """``models/model.pt`` in the trained checkpoint's layout (pruning record, then weights) for the inference config's
    ``network_def`` (with ``overrides``), untrained: enough for tests of what inference reads and writes, without
    training first."""
    import torch
    from monai.bundle import ConfigParser

    from monai_pruning.engine import PruningRecord

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.update(overrides or {})
    network = parser.get_parsed_content("network_def")
    path = root / "models" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, path)
    return path
