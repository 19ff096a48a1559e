from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_pruning.measure import LatencyResult, measure_latency


class _Recorder(nn.Module):
    """Records, for every call, the mode, the inference-mode flag, the thread count and the input it saw."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.norm = nn.BatchNorm2d(2)
        self.fail = fail
        self.calls: list[tuple[bool, bool, int]] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_inference_mode_enabled(), torch.get_num_threads()))
        self.inputs.append(x.clone())
        if self.fail:
            raise RuntimeError("boom\nsecond line")
        return self.norm(self.conv(x))


@pytest.fixture
def single_caller_thread():
    """The caller runs on one thread, so that restoring it can be told apart from the measurement's two."""
    original = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(original)


def test_measure_latency_reports_ordered_statistics_for_the_requested_repeats(single_caller_thread):
    result = measure_latency(nn.Conv2d(1, 2, 3), (1, 1, 16, 16), warmup=1, repeats=7, num_threads=2)
    assert isinstance(result, LatencyResult)
    assert result.repeats == 7 and result.num_threads == 2
    assert 0.0 < result.p10_s <= result.median_s <= result.p90_s


def test_measure_latency_runs_warmup_plus_repeats_passes_in_eval_inference_mode_with_fixed_threads(
    single_caller_thread,
):
    net = _Recorder()
    measure_latency(net, (1, 1, 8, 8), warmup=2, repeats=3, num_threads=2)
    assert net.calls == [(False, True, 2)] * 5


def test_measure_latency_restores_caller_thread_count_and_every_submodule_mode(single_caller_thread):
    net = _Recorder().train()
    net.norm.eval()  # a frozen norm inside a training network must stay frozen
    measure_latency(net, (1, 1, 8, 8), warmup=0, repeats=2, num_threads=2)
    assert torch.get_num_threads() == 1
    assert net.training and net.conv.training and not net.norm.training


def test_measure_latency_restores_threads_and_mode_when_the_forward_pass_fails(single_caller_thread):
    net = _Recorder(fail=True).train()
    with pytest.raises(ValueError, match="measure_latency: forward pass of _Recorder failed .*: boom$") as info:
        measure_latency(net, (1, 1, 8, 8), warmup=1, repeats=2, num_threads=2)
    assert "\n" not in str(info.value)
    assert torch.get_num_threads() == 1
    assert net.training


def test_measure_latency_feeds_the_same_fixed_input_without_touching_global_rng():
    net = _Recorder()
    state = torch.get_rng_state()
    measure_latency(net, (1, 1, 8, 8), warmup=0, repeats=2)
    measure_latency(net, (1, 1, 8, 8), warmup=0, repeats=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, net.inputs[0]) for x in net.inputs)
    assert net.inputs[0].std() > 0.5  # random, not zeros


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"repeats": 0}, "repeats must be an int >= 1"),
        ({"warmup": -1}, "warmup must be an int >= 0"),
        ({"num_threads": 0}, "num_threads must be an int >= 1"),
        ({"num_threads": 1.5}, "num_threads must be an int >= 1"),
        ({"device": "not-a-device"}, "is not a valid torch device"),
    ],
)
def test_measure_latency_rejects_bad_arguments_with_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_latency(nn.Conv2d(1, 2, 3), (1, 1, 8, 8), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_measure_latency_rejects_cuda_when_unavailable():
    with pytest.raises(ValueError, match="CUDA is not available"):
        measure_latency(nn.Conv2d(1, 2, 3), (1, 1, 8, 8), device="cuda")


def test_measure_latency_refuses_module_on_another_device():
    net = nn.Conv2d(1, 2, 3).to("meta")
    with pytest.raises(ValueError, match="'weight' is on meta but device='cpu'"):
        measure_latency(net, (1, 1, 8, 8))


def test_measure_latency_rejects_bad_input_shape():
    with pytest.raises(ValueError, match="measure_latency: every input_shape entry must be positive"):
        measure_latency(nn.Conv2d(1, 2, 3), (1, 1, -8, 8))


def _runtime_or_skip(name: str) -> None:
    if name in ("onnxruntime", "openvino"):
        pytest.importorskip("onnxscript")
        pytest.importorskip(name)


@pytest.mark.parametrize("runtime", ["eager", "torchscript", "onnxruntime", "openvino"])
def test_each_runtime_runner_returns_the_eager_output_and_a_positive_time(single_caller_thread, runtime):
    from monai.networks.nets import DynUNet

    from monai_pruning.measure import RUNTIME_LATENCY, RuntimeLatency

    _runtime_or_skip(runtime)
    torch.manual_seed(0)
    net = DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 8], norm_name="instance").train()
    x = torch.randn(2, 1, 16, 24)
    with torch.no_grad():
        expected = net.eval()(x)
    net.train()
    result = RUNTIME_LATENCY[runtime](net, x, warmup=2, repeats=3, num_threads=1)
    assert isinstance(result, RuntimeLatency) and result.runtime == runtime
    assert torch.allclose(result.output, expected, atol=1e-4)
    assert 0.0 < result.latency.p10_s <= result.latency.median_s <= result.latency.p90_s
    assert result.batch == 2 and result.frames_per_second == pytest.approx(2 / result.latency.median_s)
    assert torch.get_num_threads() == 1 and net.training


def test_runtime_runners_refuse_a_network_off_the_cpu_or_in_half_precision():
    from monai_pruning.measure import eager_latency

    with pytest.raises(ValueError, match="float32 on the CPU"):
        eager_latency(nn.Conv2d(1, 2, 3).half(), (1, 1, 8, 8))


def _pair_of_networks() -> dict[str, nn.Module]:
    """A small DynUNet and a narrower one of the same architecture: a baseline and a 'pruned' model."""
    from monai.networks.nets import DynUNet

    torch.manual_seed(0)
    return {name: DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=filters, norm_name="instance").train()
            for name, filters in (("baseline", [8, 16, 16]), ("pruned", [4, 8, 8]))}


def test_compare_runtimes_times_every_model_runtime_and_size_with_outputs_equal_to_eager(single_caller_thread,
                                                                                        monkeypatch):
    from monai_pruning.measure import available_runtimes, latency

    runtimes = available_runtimes()  # eager and TorchScript; the ONNX runtimes where the deploy extra is installed
    exported = []
    export = latency._quiet_export

    def counting_export(module, path, shape):
        exported.append(path.name)
        return export(module, path, shape)

    monkeypatch.setattr(latency, "_quiet_export", counting_export)
    models = _pair_of_networks()
    result = latency.compare_runtimes(models, [(1, 1, 16, 16), (2, 1, 32, 24)], runtimes, rounds=2, repeats=2,
                                      num_threads=1)
    assert list(result) == ["baseline", "pruned"]
    for timings in result.values():
        assert list(timings) == runtimes
        for sizes in timings.values():
            assert list(sizes) == ["16x16", "32x24"]
            assert sizes["16x16"]["fps"] == pytest.approx(1 / sizes["16x16"]["latency_s"])
            assert sizes["32x24"]["fps"] == pytest.approx(2 / sizes["32x24"]["latency_s"])  # batch 2: samples/s
            assert all(0.0 <= cell["max_abs_difference"] < 1e-4 for cell in sizes.values())
    assert torch.get_num_threads() == 1 and all(net.training for net in models.values())
    # one export per model, shared by every ONNX runtime, size and round
    assert sorted(exported) == (["model_0.onnx", "model_1.onnx"] if len(runtimes) > 2 else [])


class _Logger(nn.Module):
    """Appends its name and the input's spatial size to a shared log at every forward pass."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, tuple(x.shape[2:])))
        return self.conv(x)


def test_compare_runtimes_alternates_the_models_within_every_round(single_caller_thread):
    from monai_pruning.measure import compare_runtimes

    log: list = []
    models = {"a": _Logger("a", log), "b": _Logger("b", log)}
    compare_runtimes(models, [(1, 1, 8, 8), (1, 1, 4, 4)], ["eager"], rounds=2, repeats=1, num_threads=1, warmup=0)
    one_round = [("a", (8, 8)), ("b", (8, 8)), ("a", (4, 4)), ("b", (4, 4))]
    assert log[-8:] == one_round * 2  # after one reference pass per model and size, two rounds of every pair


def test_compare_runtimes_reports_the_median_of_the_round_medians(monkeypatch):
    from monai_pruning.measure import latency

    medians = iter([0.001, 0.001, 0.010])  # one slow round, disturbed by another process
    original = latency._time_runtime

    def fake(runtime, run, batch, warmup, repeats, num_threads):
        timed = original(runtime, run, batch, warmup, repeats, num_threads)
        result = latency.LatencyResult(next(medians), 0.0, 0.0, repeats, num_threads)
        return latency.RuntimeLatency(runtime, result, timed.output, batch)

    monkeypatch.setattr(latency, "_time_runtime", fake)
    result = latency.compare_runtimes({"net": nn.Conv2d(1, 2, 3)}, [(1, 1, 8, 8)], ["eager"], rounds=3, repeats=1)
    assert result["net"]["eager"]["8x8"]["latency_s"] == 0.001 and result["net"]["eager"]["8x8"]["fps"] == 1000.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runtimes": ["eager", "tensorrt"]}, "compare_runtimes: unknown runtime 'tensorrt'; choose from eager, "),
        ({"runtimes": "eager"}, "compare_runtimes: `runtimes` must be a list of runtime names"),
        ({"rounds": 0}, "compare_runtimes: rounds must be an int >= 1, got 0"),
        ({"repeats": 0}, "compare_runtimes: repeats must be an int >= 1, got 0"),
        ({"num_threads": 0}, "compare_runtimes: num_threads must be an int >= 1, got 0"),
        ({"shapes": [(1, 1, 8, 8), (2, 1, 8, 8)]}, r"compare_runtimes: every shape needs its own spatial size"),
        ({"shapes": []}, "compare_runtimes: no shapes to time"),
        ({"models": {}}, "compare_runtimes: no models to time"),
    ],
)
def test_compare_runtimes_rejects_bad_arguments_with_a_one_line_error(kwargs, message):
    from monai_pruning.measure import compare_runtimes

    arguments = {"models": {"net": nn.Conv2d(1, 2, 3)}, "shapes": [(1, 1, 8, 8)], "runtimes": ["eager"], **kwargs}
    with pytest.raises(ValueError, match="^" + message) as info:
        compare_runtimes(**arguments)
    assert "\n" not in str(info.value)


def test_compare_runtimes_names_a_known_runtime_that_is_not_installed(monkeypatch):
    from monai_pruning.measure import latency

    monkeypatch.setattr(latency, "available_runtimes", lambda: ["eager", "torchscript"])
    with pytest.raises(ValueError, match=r"runtime 'openvino' is not installed here; pip install -e \"\.\[deploy\]\""):
        latency.compare_runtimes({"net": nn.Conv2d(1, 2, 3)}, [(1, 1, 8, 8)], ["eager", "openvino"])
