"""The fused GLU + residual + layer norm + mix of variable selection (tft/fused.py)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from geoclim.models.components.tft import fused, selection
from geoclim.models.components.tft.blocks import GatedResidualNetwork
from geoclim.models.components.tft.fused import GluNormMix, glu_norm_mix, glu_norm_mix_reference
from geoclim.models.components.tft.selection import VariableSelectionNetwork


def _tensors(shapes, m, v, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(*s, generator=gen, dtype=dtype) for s in shapes]
    w = torch.softmax(torch.randn(v, m, generator=gen, dtype=dtype), 0)  # (V, M)
    return [t.requires_grad_() for t in (*tensors, w)]


def _inputs(v=3, m=7, d=5, h=4, dtype=torch.float64, seed=0):
    """``glu_norm_mix``'s tensors: hidden, GLU weights and bias, x1, skip, norm affine, w."""
    shapes = [(v, m, h), (v, h, 2 * d), (v, 2 * d), (v, m, 2), (v, 2, d), (v, d), (v, d)]
    return _tensors(shapes, m, v, dtype, seed)


def _fused_inputs(v=3, m=7, d=5, dtype=torch.float64, seed=0):
    """``GluNormMix``'s tensors: value and gate halves, x1, skip, norm affine, w."""
    shapes = [(v, m, d), (v, m, d), (v, m, 2), (v, 2, d), (v, d), (v, d)]
    return _tensors(shapes, m, v, dtype, seed)


def test_fused_tail_has_the_exact_gradients_of_every_input():
    assert torch.autograd.gradcheck(GluNormMix.apply, _fused_inputs(v=2, m=4, d=3), fast_mode=True)


def test_fused_glu_layer_and_tail_have_the_exact_gradients_of_every_input():
    # the GLU layer as two half products, then the fused tail
    args = _inputs(v=2, m=4, d=3, h=2)
    assert torch.autograd.gradcheck(lambda *a: glu_norm_mix(*a, size=3), args, fast_mode=True)


def test_fused_tail_is_the_glu_of_the_halves():
    value, gate, x1, skip, weight, bias, w = _fused_inputs(v=2, m=5, d=3)
    got = GluNormMix.apply(value, gate, x1, skip, weight, bias, w)
    # one hidden unit per output, identity weights: the GLU layer passes [value, gate] through
    hidden = torch.cat([value, gate], dim=-1)  # (V, M, 2D)
    eye = torch.eye(6, dtype=hidden.dtype).expand(2, -1, -1)
    want = glu_norm_mix_reference(
        hidden, eye, torch.zeros(2, 6, dtype=hidden.dtype), x1, skip, weight, bias, w, size=3
    )
    torch.testing.assert_close(got, want)


def test_fused_tail_without_a_gradient_for_x1_gives_the_same_other_gradients():
    # in training [x, 1] is built from the data and needs no gradient: backward skips it
    args = _fused_inputs(v=3, m=6, d=4)
    out = GluNormMix.apply(*args)
    g = torch.randn_like(out)
    want = torch.autograd.grad(out, args, g)
    frozen = [a.detach().requires_grad_(i != 2) for i, a in enumerate(args)]
    out = GluNormMix.apply(*frozen)
    torch.testing.assert_close(out, GluNormMix.apply(*args))
    others = [a for i, a in enumerate(frozen) if i != 2]
    with _ProductShapes() as products:
        got = torch.autograd.grad(out, others, g)
    for a, b in zip(got, [w for i, w in enumerate(want) if i != 2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (6, 2) not in products.shapes  # no (M, 2) gradient of [x, 1] was computed
    assert (2, 4) in products.shapes  # the skip's gradient still was


class _ProductShapes(TorchDispatchMode):
    """Records the output shape of every ``aten.mm`` run inside the block."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten.mm.default, torch.ops.aten.mm.out):
            self.shapes.append(tuple(out.shape))
        return out


def test_fused_tail_writes_contiguous_gradients_of_both_halves():
    # each half's gradient feeds a matrix product's backward: a view into a (V, M, 2D)
    # buffer (the layout before) would hand every pass before it a strided tensor
    args = _fused_inputs(v=3, m=6, d=4, dtype=torch.float32)
    out = GluNormMix.apply(*args)
    d_value, d_gate = torch.autograd.grad(out, args[:2], torch.randn_like(out))
    assert d_value.shape == d_gate.shape == (3, 6, 4)
    assert d_value.is_contiguous() and d_gate.is_contiguous()


def test_fused_tail_equals_the_op_by_op_function():
    args = _inputs(v=4, m=11, d=6, h=5, dtype=torch.float32)
    got = glu_norm_mix(*args, size=6)
    want = glu_norm_mix_reference(*args, size=6)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got, args, torch.ones_like(got))
    want_grads = torch.autograd.grad(want, args, torch.ones_like(want))
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_without_gradients_the_plain_ops_run(monkeypatch):
    def refuse(*args):
        raise AssertionError("the fused function ran without gradients")

    monkeypatch.setattr(GluNormMix, "apply", refuse)
    args = [t.detach() for t in _inputs()]
    with torch.no_grad():
        got = glu_norm_mix(*_inputs(), size=5)
    torch.testing.assert_close(got, glu_norm_mix_reference(*args, size=5))


def test_variable_selection_trains_as_with_the_op_by_op_tail(monkeypatch):
    # same seed (same dropout masks): the fused and the op-by-op tail give the same
    # selected embedding, weights and parameter gradients in training (float64: the two
    # differ in the order of float32 roundings, not in what they compute)
    def run():
        torch.manual_seed(0)
        vsn = VariableSelectionNetwork(4, hidden_size=8, dropout=0.3, context_size=8)
        vsn = vsn.double().train()
        x = torch.randn(3, 6, 4, dtype=torch.float64)
        context = torch.randn(3, 1, 8, dtype=torch.float64)
        out, weights = vsn(x, context)
        (out.square().sum() + weights[..., 0].sum()).backward()
        return out, weights, {n: p.grad for n, p in vsn.named_parameters()}

    applied, apply = [], fused.GluNormMix.apply
    monkeypatch.setattr(
        fused.GluNormMix, "apply", staticmethod(lambda *a: applied.append(1) or apply(*a))
    )
    got = run()
    assert applied == [1]  # the first run went through the fused function
    calls = []
    monkeypatch.setattr(
        selection,
        "glu_norm_mix",
        lambda *a, size: calls.append(1) or fused.glu_norm_mix_reference(*a, size=size),
    )
    want = run()
    assert calls == [1]
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert got[2].keys() == want[2].keys()
    for name, grad in got[2].items():
        torch.testing.assert_close(grad, want[2][name], msg=name)


@pytest.mark.parametrize("n_vars", [2, 4])
def test_variable_selection_eval_output_is_the_plain_computation(n_vars, monkeypatch):
    torch.manual_seed(1)
    vsn = VariableSelectionNetwork(n_vars, hidden_size=8, context_size=4).eval()
    x, context = torch.randn(2, 5, n_vars), torch.randn(2, 1, 4)
    with torch.no_grad():
        inference, _ = vsn(x, context)
    applied, apply = [], fused.GluNormMix.apply
    monkeypatch.setattr(
        fused.GluNormMix, "apply", staticmethod(lambda *a: applied.append(1) or apply(*a))
    )
    with_grads, _ = vsn(x, context)  # parameters need grads: the fused function runs
    assert applied == [1]
    torch.testing.assert_close(with_grads, inference)


@pytest.mark.parametrize(
    ("input_size", "output_size", "steps"), [(12, 3, 7), (8, 5, 1), (4, 4, 7)]
)  # resampling, static rows, no resampling
@pytest.mark.parametrize("training", [False, True], ids=["eval", "dropout"])
def test_grn_of_an_affine_input_equals_the_grn_of_the_built_input(
    input_size, output_size, steps, training
):
    # variable selection's weight GRN folds the embedding map into its first layer and its
    # residual's interpolation, and runs with the rows as the last axis: the same values and
    # gradients as the plain GRN of the built input, dropout masks included (same draws)
    torch.manual_seed(0)
    grn = GatedResidualNetwork(input_size, 4, output_size, dropout=0.3, context_size=5)
    grn.double().train(training)  # float64: the two layouts round differently
    n, k, f64 = 3, 3, torch.float64
    x = torch.randn(n, steps, k, dtype=f64) if steps > 1 else torch.randn(n, k, dtype=f64)
    context = torch.randn(n, 1, 5, dtype=f64) if steps > 1 else torch.randn(n, 5, dtype=f64)
    a = torch.randn(k, input_size, dtype=f64, requires_grad=True)
    b = torch.randn(input_size, dtype=f64, requires_grad=True)
    torch.manual_seed(1)
    want = grn(x @ a + b, context).reshape(-1, output_size)  # (M, out)
    torch.manual_seed(1)
    got = grn.forward_affine_t(x.reshape(-1, k).T.contiguous(), a, b, context, steps)
    assert got.shape == (output_size, n * steps)
    torch.testing.assert_close(got.T, want)
    params = [a, b, *grn.parameters()]
    g = torch.randn_like(want)
    grads = torch.autograd.grad(got.T, params, g, allow_unused=True)
    want_grads = torch.autograd.grad(want, params, g, allow_unused=True)
    for p, q in zip(grads, want_grads, strict=True):
        assert (p is None) == (q is None)
        if p is not None:
            torch.testing.assert_close(p, q)
