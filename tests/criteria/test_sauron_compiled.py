"""The compiled Sauron terms: the eager values and gradients, one graph for every width, an eager fallback."""

from __future__ import annotations

import warnings

import pytest
import torch

from monai_pruning.criteria import CompiledSauronTerms, delta_opt_and_pooled, delta_prune, mean_layer_distance


def _layers(widths: tuple[int, ...], three_d: bool = True) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Maps of several sizes, odd sizes, a run of channels inside a wider (concatenated) input, and a 3D map."""
    generator = torch.Generator().manual_seed(0)
    a, b, c = widths
    layers = [
        (torch.randn(2, a, 16, 16, generator=generator).requires_grad_(), (0, a)),
        (torch.randn(2, b + 3, 9, 7, generator=generator).requires_grad_(), (2, b)),
    ]
    if three_d:
        layers.append((torch.randn(2, c, 6, 8, 5, generator=generator).requires_grad_(), (0, c)))
    return layers


def _regulariser_and_grads(fn, layers):
    terms = [fn(features, channels=channels) for features, channels in layers]
    penalty = mean_layer_distance([distances for distances, _ in terms])
    grads = torch.autograd.grad(penalty, [features for features, _ in layers])
    return penalty, [pooled for _, pooled in terms], grads


def _same(compiled_terms: CompiledSauronTerms, three_d: bool = True) -> None:
    layers = _layers((6, 4, 5), three_d)
    penalty, pooled, grads = _regulariser_and_grads(compiled_terms.delta_opt_and_pooled, layers)
    penalty_eager, pooled_eager, grads_eager = _regulariser_and_grads(delta_opt_and_pooled, layers)
    assert torch.allclose(penalty, penalty_eager, rtol=1e-5, atol=1e-7)
    for got, expected in zip(pooled + list(grads), pooled_eager + list(grads_eager)):
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    for maps in pooled_eager:
        for reference in (0, maps.shape[1] - 1):
            expected = delta_prune(maps, reference, pooled=True)
            got = compiled_terms.delta_prune(maps, reference, pooled=True)
            assert got[reference] == 0 and torch.allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_compiled_terms_give_the_eager_regulariser_pooled_maps_gradients_and_scores():
    _same(CompiledSauronTerms(backend="aot_eager"))


def test_a_cut_to_fewer_channels_does_not_compile_again():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    terms = CompiledSauronTerms(backend=counting_backend)
    for widths in ((6, 4, 5), (5, 3, 4), (4, 3, 3)):  # epochs after cuts: narrower groups, same maps
        for features, channels in _layers(widths):
            terms.delta_opt_and_pooled(features, channels=channels)[0].sum().backward()
        after_first_epoch = len(graphs) if widths == (6, 4, 5) else after_first_epoch
    assert terms.compiled and len(graphs) == after_first_epoch  # no graph after the first epoch's


def test_compiled_terms_fall_back_to_eager_with_one_warning_where_compilation_fails():
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler found\nsecond line")

    terms = CompiledSauronTerms(backend=broken_backend)
    with pytest.warns(RuntimeWarning, match=r"torch.compile unavailable \(.*no C\+\+ compiler found\)") as record:
        _same(terms)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert not terms.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(terms)


@pytest.mark.slow
def test_inductor_compiled_terms_give_the_eager_values_and_gradients():
    # the default backend, C++ kernels generated and compiled with gcc (2D maps only, fewer kernels): up to a minute
    # on a loaded 2-core machine the first time, seconds once torch's on-disk compile cache holds them
    _same(CompiledSauronTerms(), three_d=False)
