"""Capture a network as a ``torch.fx`` graph with the shape of every intermediate value.

The channel analysis needs two things ``torch.fx.symbolic_trace`` alone does not give: the graph must be the one the
network really runs (some MONAI code branches on ``torch.jit.isinstance(x, torch.Tensor)``, which is ``False`` for a
tracing proxy and silently drops e.g. BasicUNet's skip concatenation), and every node must carry the shape it has on
an example input. Both are checked here, on a real forward pass, before any channel is cut.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["TraceError", "capture_graph"]


class TraceError(RuntimeError):
    """The network cannot be turned into a graph the channel engine can trust."""


class _ConcreteProxy(torch.fx.Proxy):
    """A proxy that also holds the value its node has on the example input.

    MONAI networks compute with shapes in Python (``len(x.shape)``, ``if a.shape[-1] != b.shape[-1]``, pad lists
    built from sizes).  Plain symbolic tracing cannot answer those; with the example's concrete value at hand the
    tracer can, and the graph is specialised to the example's shape, which is all the channel analysis needs.
    """

    value: Any = None
    has_value: bool = False

    def _concrete(self, what: str) -> Any:
        if not self.has_value:
            raise torch.fx.proxy.TraceError(f"{what} of a value that could not be computed during tracing")
        return self.value

    @property
    def shape(self) -> Any:
        return self._concrete("shape").shape

    @property
    def dtype(self) -> Any:
        return self._concrete("dtype").dtype

    @property
    def device(self) -> Any:
        return self._concrete("device").device

    def size(self, dim: int | None = None) -> Any:
        value = self._concrete("size")
        return value.size() if dim is None else value.size(dim)

    def dim(self) -> Any:
        return self._concrete("dim").dim()

    def __len__(self) -> int:
        return len(self._concrete("len"))

    def __bool__(self) -> bool:
        value = self._concrete("truth value")
        if isinstance(value, torch.Tensor):
            # a branch on tensor *values* (`if x.sum() > 0:`) would be frozen to the example's branch: the other
            # branch's modules would be missing from the graph and a cut would silently break them
            raise torch.fx.proxy.TraceError(
                f"data-dependent control flow: Python branches on the value of tensor '{self.node.name}'"
            )
        return bool(value)

    def __iter__(self):  # noqa: D105 - yields one proxy per element, as tuple unpacking needs
        return iter([self[i] for i in range(len(self))])


class _ConcreteTracer(torch.fx.Tracer):
    """``torch.fx`` tracer that executes every traced operation on the example input as it goes."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self._example = example
        self._current_module: nn.Module | None = None
        self._installed: set[int] = set()
        self._tensors: dict[str, torch.Tensor] = {}
        self._computing = False

    def trace(self, root: Any, concrete_args: Any = None) -> torch.fx.Graph:
        if isinstance(root, nn.Module):
            self._installed = {id(m) for m in root.modules()}
            self._tensors = {**dict(root.named_parameters()), **dict(root.named_buffers())}
        return super().trace(root, concrete_args)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        # while computing a concrete value, module attributes must be the real tensors, not new graph nodes
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        return _ConcreteProxy(node, self)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if id(m) not in self._installed:
            # a module built inside forward (e.g. a pooling layer made on the fly): record its operations inline
            return m.forward(*args, **kwargs)
        previous, self._current_module = self._current_module, m
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._current_module = previous

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # noqa: ANN
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if not isinstance(proxy, _ConcreteProxy):
            return proxy

        def concrete(a: Any) -> Any:
            if isinstance(a, _ConcreteProxy):
                return a._concrete("input")
            if isinstance(a, torch.fx.proxy.Attribute):  # `x.data` and the like, not yet a node of its own
                return getattr(concrete(a.root), a.attr)
            return a

        self._computing = True
        try:
            cargs = torch.fx.node.map_aggregate(args, concrete)
            ckwargs = torch.fx.node.map_aggregate(kwargs, concrete)
            if kind == "placeholder":
                value = self._example
            elif kind == "call_function":
                value = target(*cargs, **ckwargs)
            elif kind == "call_method":
                value = getattr(cargs[0], target)(*cargs[1:], **ckwargs)
            elif kind == "call_module":
                # the module's own forward, not __call__: __call__ is patched by the tracer while tracing
                value = self._current_module.forward(*cargs, **ckwargs)
            elif kind == "get_attr" and target in self._tensors:
                value = self._tensors[target]
            else:
                return proxy
        except Exception:  # noqa: BLE001 - a value we cannot compute only matters if Python code asks for it
            return proxy
        finally:
            self._computing = False
        proxy.value, proxy.has_value = value, True
        return proxy


@contextlib.contextmanager
def _proxy_aware_jit_isinstance() -> Iterator[None]:
    """Make ``torch.jit.isinstance(proxy, torch.Tensor)`` true while tracing.

    In eager mode the check is a plain ``isinstance``; under ``torch.fx`` a ``Proxy`` stands in for a tensor, so the
    eager answer is the one the traced graph must reproduce.  The patch lives only for the duration of the trace.
    """
    original = torch.jit.isinstance

    def patched(obj: Any, target_type: Any) -> bool:
        if isinstance(obj, torch.fx.Proxy) and target_type is torch.Tensor:
            return True
        return original(obj, target_type)

    torch.jit.isinstance = patched  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.jit.isinstance = original  # type: ignore[assignment]


@contextlib.contextmanager
def _side_effect_free(network: nn.Module, train: bool) -> Iterator[None]:
    """Run forward passes that leave no trace: buffers (BatchNorm statistics), mode and RNG are restored.

    The mode is restored module by module: a network training with some layers kept in eval mode (frozen
    BatchNorm while fine-tuning) must come back exactly so, not with every layer set to the root's mode.
    """
    saved_buffers = {name: buf.detach().clone() for name, buf in network.named_buffers()}
    modes = [(module, module.training) for module in network.modules()]
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "cpu":
        rng = torch.random.fork_rng(devices=[])
    else:  # dropout on an accelerator draws from that device's generator, not the CPU one
        index = device.index if device.index is not None else getattr(torch, device.type).current_device()
        rng = torch.random.fork_rng(devices=[index], device_type=device.type)
    network.train(train)
    try:
        with rng, torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for name, buf in network.named_buffers():
                if name in saved_buffers and buf.shape == saved_buffers[name].shape:
                    buf.copy_(saved_buffers[name])
        for module, training in modes:
            module.training = training


def _flatten_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten_tensors(v)]
    return []


def capture_graph(
    network: nn.Module, example_shape: Sequence[int], train: bool = True, atol: float = 1e-5
) -> torch.fx.GraphModule:
    """Trace ``network`` and annotate each node with ``meta["tensor_meta"]`` for an input of ``example_shape``.

    Args:
        network: the network to trace; it is not modified (buffers, mode and RNG state are restored).
        example_shape: ``(batch, channels, *spatial)`` of an input the network accepts. A batch of at least 2 keeps
            BatchNorm valid in training mode.
        train: trace in training mode, so that modules used only while training (deep-supervision heads) are in the
            graph and get their input channels cut with everything else.
        atol: tolerance of the check that the traced graph computes what the network computes.

    Raises:
        TraceError: the network cannot be symbolically traced, or its traced graph disagrees with eager execution.
    """
    if isinstance(network, nn.parallel.DistributedDataParallel | nn.DataParallel):
        raise TraceError("prune the wrapped network (`.module`), not its DistributedDataParallel/DataParallel wrapper")
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    # a private generator: drawing the example must not move the caller's random stream
    generator = torch.Generator(device=device).manual_seed(0)
    example = torch.randn(*example_shape, generator=generator, device=device, dtype=dtype)
    name = type(network).__name__
    try:
        with _side_effect_free(network, train):
            torch.manual_seed(0)
            expected = network(example)
    except Exception as err:  # noqa: BLE001
        raise TraceError(
            f"{name} does not run on an input of shape {tuple(example_shape)} "
            f"({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    try:
        with _side_effect_free(network, train), _proxy_aware_jit_isinstance():
            # random draws made outside the graph (e.g. EfficientNet's drop-connect mask, built from concrete
            # shapes) become constants of the graph: seeding as for the eager pass makes them the same draws
            torch.manual_seed(0)
            tracer = _ConcreteTracer(example)
            graph = tracer.trace(network)
        graph_module = torch.fx.GraphModule(network, graph, name)
        with _side_effect_free(network, train):
            torch.manual_seed(0)
            traced = ShapeProp(graph_module).propagate(example)
    except Exception as err:  # noqa: BLE001 - any tracing failure is reported as one clear error
        raise TraceError(
            f"cannot trace {name} with torch.fx ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "this network is not supported by the channel engine"
        ) from err
    expected_t, traced_t = _flatten_tensors(expected), _flatten_tensors(traced)
    if len(expected_t) != len(traced_t) or any(
        a.shape != b.shape or not torch.allclose(a, b, atol=atol, rtol=1e-4) for a, b in zip(expected_t, traced_t)
    ):
        raise TraceError(
            f"the torch.fx graph of {name} computes something else than the network itself "
            "(data-dependent control flow); this network is not supported by the channel engine"
        )
    return graph_module
