from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

from monai_pruning.measure import peak_inference_memory_mb

# one conv 1 -> 16 channels; at 1024 x 1024 its output alone is 16 x 1024 x 1024 float32 = 64 MiB
_BUILD_CONV = functools.partial(nn.Conv2d, 1, 16, 3, padding=1)
_LARGE = (1, 1, 1024, 1024)
_SMALL = (1, 1, 64, 64)


@pytest.fixture(scope="module")
def large_torchscript_peak(tmp_path_factory) -> float:
    path = tmp_path_factory.mktemp("torchscript") / "conv.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(_BUILD_CONV().eval(), torch.zeros(1, 1, 8, 8)), str(path))
    # the caller holds 512 MiB: a fresh process must not start from the caller's peak (Linux keeps ru_maxrss across
    # fork and exec, which would hide the 64 MiB output under it)
    ballast = torch.ones(128 * 2**20)
    peak = peak_inference_memory_mb(path, _LARGE, num_threads=1)
    del ballast
    return peak


def test_peak_memory_of_torchscript_file_covers_the_output_activation_whatever_the_caller_holds(large_torchscript_peak):
    assert 60.0 <= large_torchscript_peak < 1024.0


def test_peak_memory_of_builder_grows_with_input_size(large_torchscript_peak):
    small = peak_inference_memory_mb(_BUILD_CONV, _SMALL, num_threads=1)
    assert 0.0 <= small < large_torchscript_peak - 50.0


def test_peak_memory_reports_a_failing_subprocess_in_one_line():
    with pytest.raises(RuntimeError, match="measuring subprocess failed: .*expected input.* to have 1 channels") as e:
        peak_inference_memory_mb(_BUILD_CONV, (1, 3, 8, 8))
    assert "\n" not in str(e.value)


def test_peak_memory_rejects_missing_file(tmp_path):
    with pytest.raises(ValueError, match="TorchScript file not found: .*missing.pt"):
        peak_inference_memory_mb(tmp_path / "missing.pt", _SMALL)


def test_peak_memory_rejects_module_instance():
    with pytest.raises(TypeError, match="got a Conv2d instance; pass a TorchScript path or a function"):
        peak_inference_memory_mb(_BUILD_CONV(), _SMALL)


def test_peak_memory_rejects_builder_that_cannot_reach_the_subprocess():
    def local_builder() -> nn.Module:
        return _BUILD_CONV()

    with pytest.raises(ValueError, match="builder cannot be sent to a subprocess"):
        peak_inference_memory_mb(local_builder, _SMALL)


@pytest.mark.parametrize("kwargs", [{"input_shape": (1, 0, 4)}, {"input_shape": _SMALL, "num_threads": 0}])
def test_peak_memory_rejects_bad_arguments_before_starting_a_subprocess(kwargs):
    with pytest.raises(ValueError, match="peak_inference_memory_mb: "):
        peak_inference_memory_mb(_BUILD_CONV, **kwargs)
