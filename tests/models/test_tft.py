import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from geoclim.models.components.tft.attention import InterpretableMultiHeadAttention, causal_mask
from geoclim.models.components.tft.blocks import (
    GateAddNorm,
    GatedResidualNetwork,
    VariableGRN,
    time_shared_dropout,
)
from geoclim.models.components.tft.selection import VariableSelectionNetwork

from .conftest import DIMS, make_batch, make_net


def test_variable_grn_shapes_and_per_variable_weights():
    grn = VariableGRN(n_vars=3, input_size=4, output_size=8)
    e, skip = torch.randn(3, 35, 4), torch.randn(3, 35, 8)  # variable-major (V, M, .)
    out = grn(e, skip)
    assert out.shape == (3, 35, 8)
    # each variable has its own weights: changing variable 0 leaves variables 1, 2 alone
    e2 = e.clone()
    e2[0] += 1.0
    out2 = grn(e2, skip)
    assert not torch.allclose(out[0], out2[0])
    torch.testing.assert_close(out[1:], out2[1:])


def test_variable_grn_matches_a_loop_of_single_grns():
    grn = VariableGRN(n_vars=2, input_size=4, output_size=6).eval()
    e, skip = torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    out = grn(e, skip)
    for v in range(2):
        eta = torch.nn.functional.elu(e[v] @ grn.fc1_w[v] + grn.fc1_b[v])
        eta = eta @ grn.fc2_w[v] + grn.fc2_b[v]
        gated = torch.nn.functional.glu(eta @ grn.glu_w[v] + grn.glu_b[v], dim=-1)
        want = torch.nn.functional.layer_norm(gated + skip[v], (6,)) * grn.norm_w[v] + grn.norm_b[v]
        torch.testing.assert_close(out[v], want)


def test_grn_and_gate_add_norm_shapes():
    assert GatedResidualNetwork(8, 8, 8, 0.0, context_size=4)(
        torch.randn(2, 5, 8), torch.randn(2, 1, 4)
    ).shape == (2, 5, 8)
    assert GateAddNorm(8)(torch.randn(2, 5, 8), torch.randn(2, 5, 8)).shape == (2, 5, 8)


@pytest.mark.parametrize("n_vars", [1, 4])
def test_variable_selection_weights_sum_to_one(n_vars):
    vsn = VariableSelectionNetwork(n_vars, hidden_size=8, context_size=8)
    out, weights = vsn(torch.randn(3, 6, n_vars), torch.randn(3, 1, 8))
    assert out.shape == (3, 6, 8)
    assert weights.shape == (3, 6, n_vars)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    static_out, static_w = VariableSelectionNetwork(n_vars, 8)(torch.randn(3, n_vars))
    assert static_out.shape == (3, 8) and static_w.shape == (3, n_vars)


def test_causal_mask_lets_decoder_see_past_and_earlier_leads_only():
    mask = causal_mask(input_steps=3, horizon=2)
    assert mask.tolist() == [
        [False, False, False, False, True],
        [False, False, False, False, False],
    ]


def test_attention_shapes_and_masked_weights_are_zero():
    attn = InterpretableMultiHeadAttention(n_head=2, d_model=8)
    x = torch.randn(4, 5, 8)
    out, weights = attn(x[:, 3:], x, x, mask=causal_mask(3, 2))
    assert out.shape == (4, 2, 8)
    assert weights.shape == (4, 2, 2, 5)
    assert torch.all(weights[:, 0, :, 4] < 1e-6)


def test_attention_matches_pytorch_forecastings_with_the_same_weights():
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
        InterpretableMultiHeadAttention as Reference,
    )

    torch.manual_seed(0)
    reference = Reference(n_head=4, d_model=16).eval()
    ours = InterpretableMultiHeadAttention(n_head=4, d_model=16).eval()
    ours.load_reference(reference)
    x = torch.randn(3, 7, 16)
    mask = causal_mask(4, 3)
    want_out, want_attn = reference(x[:, 4:], x, x, mask=mask)
    got_out, got_attn = ours(x[:, 4:], x, x, mask=mask)
    torch.testing.assert_close(got_out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_attn, want_attn, rtol=1e-5, atol=1e-6)


def test_tft_returns_interpretation_weights():
    net = make_net("tft", attention_heads=2).eval()
    out = net(make_batch(b=2, h=3, w=2))
    t = DIMS["input_steps"] + DIMS["horizon"]
    assert out["attention"].shape == (2, DIMS["horizon"], 2, t, 3, 2)
    assert out["static_weights"].shape == (2, DIMS["c_static"], 3, 2)
    assert out["encoder_weights"].shape == (2, DIMS["input_steps"], DIMS["c_past"], 3, 2)
    assert out["encoder_known_weights"].shape == (2, DIMS["input_steps"], DIMS["c_known"], 3, 2)
    assert out["decoder_weights"].shape == (2, DIMS["horizon"], DIMS["c_known"], 3, 2)
    # past and known encoder variables share one softmax per input step
    encoder = out["encoder_weights"].sum(2) + out["encoder_known_weights"].sum(2)
    torch.testing.assert_close(encoder, torch.ones_like(encoder))
    assert out["encoder_known_weights"].min() > 0.0  # the known inputs are encoder variables
    for key, dim in (("static_weights", 1), ("decoder_weights", 2)):
        torch.testing.assert_close(out[key].sum(dim), torch.ones_like(out[key].sum(dim)))


def test_tft_encoder_reads_the_known_inputs_at_the_input_steps():
    net = make_net("tft", anchor="none").eval()  # the gated anchor starts at persistence
    batch = make_batch(b=3)
    batch["known_past"].requires_grad_(True)
    out = net(batch)
    # the encoder selection weights and the forecast depend on known_past ...
    grad = torch.autograd.grad(out["prediction"].sum(), batch["known_past"])[0]
    assert grad.abs().sum(dim=(0, 2, 3, 4)).min() > 0  # ... at every input step
    changed = dict(batch, known_past=batch["known_past"].detach() + 1.0)
    with torch.no_grad():
        assert not torch.allclose(net(changed)["prediction"], out["prediction"])
    # the decoder-only variant never reads it and says so in its weights
    decoder_only = make_net("tft", encoder_known=False).eval()
    no_field = {k: v for k, v in batch.items() if k != "known_past"}
    with torch.no_grad():
        plain = decoder_only(no_field)
    assert plain["encoder_known_weights"].shape[2] == 0
    ones = torch.ones(3, DIMS["input_steps"], 1, 1)
    torch.testing.assert_close(plain["encoder_weights"].sum(2), ones)


def test_tft_without_known_past_names_the_field():
    from geoclim.errors import ConfigError

    net = make_net("tft").eval()
    batch = {k: v for k, v in make_batch(b=2).items() if k != "known_past"}
    with pytest.raises(ConfigError, match="known_past.*encoder_known=false"):
        net(batch)
    # with no known inputs there is nothing to read: the field may be absent
    none_known = make_net("tft", dims={"c_known": 0}).eval()
    b = {k: v for k, v in make_batch(b=2, dims={"c_known": 0}).items() if k != "known_past"}
    assert none_known(b)["encoder_known_weights"].shape == (2, DIMS["input_steps"], 0, 1, 1)


def test_tft_training_skips_attention_weights_unless_asked_and_matches_eval_without_dropout():
    net = make_net("tft")  # dropout 0: train and eval compute the same function
    batch = make_batch(b=3)
    train_out = net.train()(batch)
    assert "attention" not in train_out  # the fused kernel ran, no weights materialised
    net.need_weights = True
    asked = net(batch)
    net.need_weights = False
    eval_out = net.eval()(batch)
    torch.testing.assert_close(train_out["prediction"], eval_out["prediction"])
    torch.testing.assert_close(asked["prediction"], eval_out["prediction"])
    torch.testing.assert_close(asked["attention"], eval_out["attention"])


def test_fused_attention_matches_the_explicit_softmax():
    torch.manual_seed(0)
    attn = InterpretableMultiHeadAttention(n_head=4, d_model=16).eval()
    x = torch.randn(3, 7, 16)
    mask = causal_mask(4, 3)
    fused, none = attn(x[:, 4:], x, x, mask=mask, need_weights=False)
    explicit, weights = attn(x[:, 4:], x, x, mask=mask)
    assert none is None and weights is not None
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


def test_time_shared_dropout_draws_one_mask_per_sequence_and_feature():
    torch.manual_seed(0)
    x = torch.ones(64, 10, 8)  # (N, T, D)
    y = time_shared_dropout(x, 0.5, training=True)
    assert set(y.unique().tolist()) <= {0.0, 2.0}  # kept entries scaled by 1 / (1 - p)
    torch.testing.assert_close(y, y[:, :1].expand_as(y))  # the same mask at every step
    assert 0.3 < (y[:, 0] == 0).float().mean() < 0.7
    assert not torch.equal(y[0, 0], y[1, 0]) or not torch.equal(y[1, 0], y[2, 0])
    # variable-major rows (V, N * T, D): shared within each of the N sequences of T steps
    rows = time_shared_dropout(torch.ones(3, 64 * 10, 8), 0.5, training=True, steps=10)
    per_seq = rows.view(3, 64, 10, 8)
    torch.testing.assert_close(per_seq, per_seq[:, :, :1].expand_as(per_seq))
    rows2d = time_shared_dropout(torch.ones(500, 8), 0.5, training=True)  # (N, D): no time
    assert 0.3 < (rows2d == 0).float().mean() < 0.7
    assert time_shared_dropout(x, 0.5, training=False) is x


def test_grn_and_gate_match_pytorch_forecastings_with_the_same_weights():
    from pytorch_forecasting.models.temporal_fusion_transformer import sub_modules as pf

    torch.manual_seed(0)
    cases = [
        (GatedResidualNetwork(8, 8, 8, 0.1), pf.GatedResidualNetwork(8, 8, 8, 0.1), False),
        (
            GatedResidualNetwork(12, 5, 4, 0.1, context_size=6),
            pf.GatedResidualNetwork(12, 5, 4, 0.1, context_size=6),
            True,
        ),
    ]
    for ours, reference, with_context in cases:
        ours.load_state_dict(reference.state_dict())  # same parameter names and shapes
        ours.eval(), reference.eval()
        x = torch.randn(3, 5, ours.input_size)
        context = torch.randn(3, 1, 6) if with_context else None
        torch.testing.assert_close(ours(x, context), reference(x, context))
    gate, ref_gate = GateAddNorm(8, dropout=0.1), pf.GateAddNorm(8, dropout=0.1)
    gate.load_state_dict(ref_gate.state_dict())
    x, skip = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(gate.eval()(x, skip), ref_gate.eval()(x, skip))


class _OnnxWrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, past, known_future, known_past, static):
        batch = {"past": past, "known_future": known_future, "known_past": known_past}
        out = self.net(batch | {"static": static})
        return out["prediction"], out["attention"]


@pytest.mark.parametrize("c_static", [2, 0], ids=["static", "no-static"])
def test_tft_exports_to_onnx_with_dynamic_batch(tmp_path, c_static):
    dims = {"c_static": c_static}
    net = make_net("tft", n_quantiles=3, dropout=0.1, dims=dims).eval()
    wrapper = _OnnxWrapper(net).eval()
    names = ["past", "known_future", "known_past", "static"]
    batch = make_batch(b=3, dims=dims)
    path = tmp_path / "tft.onnx"
    torch.onnx.export(
        wrapper,
        tuple(batch[n] for n in names),
        str(path),
        input_names=names,
        output_names=["prediction", "attention"],
        dynamo=False,
        dynamic_axes={n: {0: "batch"} for n in [*names, "prediction", "attention"]},
    )
    session = ort.InferenceSession(str(path))
    other = make_batch(b=5, seed=1, dims=dims)  # another batch size than at export
    fed = [i.name for i in session.get_inputs()]  # an unused static input is pruned
    got = session.run(None, {n: other[n].numpy() for n in fed})
    with torch.no_grad():
        want = wrapper(*(other[n] for n in names))
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-5)


def test_variable_selection_equals_embed_transform_and_mix_done_step_by_step():
    torch.manual_seed(0)
    vsn = VariableSelectionNetwork(3, hidden_size=8, context_size=4, embedding_size=5).eval()
    x, context = torch.randn(2, 6, 3), torch.randn(2, 1, 4)
    got, weights = vsn(x, context)
    xv = x.reshape(-1, 3).T.unsqueeze(-1)  # (V, M, 1)
    emb = xv * vsn.embed_w.unsqueeze(1) + vsn.embed_b.unsqueeze(1)  # (V, M, H)
    skip = xv * vsn.skip_w.unsqueeze(1) + vsn.skip_b.unsqueeze(1)  # (V, M, D)
    processed = vsn.variable_grns(emb, skip)  # the plain per-variable GRNs on the embeddings
    got_processed = vsn.variable_grns.forward_scalars(
        xv, vsn.embed_w, vsn.embed_b, vsn.skip_w, vsn.skip_b
    )
    torch.testing.assert_close(got_processed, processed)
    assert vsn.weight_grn is not None
    want_w = torch.softmax(vsn.weight_grn(emb.permute(1, 0, 2).reshape(2, 6, 15), context), -1)
    torch.testing.assert_close(weights, want_w)
    want = (processed * want_w.reshape(-1, 3).T.unsqueeze(-1)).sum(0).reshape(2, 6, 8)
    torch.testing.assert_close(got, want)


def test_variable_selection_backward_keeps_the_per_variable_gradients_contiguous():
    # the fused GLU layer + layer norm + mix hands back a contiguous (V, M, H) gradient of
    # the GLU layer's input (a strided layout would slow every pass before it)
    vsn = VariableSelectionNetwork(4, hidden_size=8, context_size=8).train()
    seen, grns = [], vsn.variable_grns.hidden_scalars

    def hidden_scalars(*args, **kwargs):
        hidden, x1, skip = grns(*args, **kwargs)  # (V, M, H), ...
        hidden.register_hook(lambda g: seen.append(g.is_contiguous()))
        return hidden, x1, skip

    vsn.variable_grns.hidden_scalars = hidden_scalars
    out, _ = vsn(torch.randn(3, 6, 4), torch.randn(3, 1, 8))
    out.sum().backward()
    assert seen == [True]


@pytest.mark.parametrize("steps", [0, 3])
def test_time_shared_dropout_in_place_draws_and_scales_as_out_of_place(steps):
    x = torch.randn(2, 6, 5)
    torch.manual_seed(3)
    want = time_shared_dropout(x, 0.5, True, steps=steps)
    torch.manual_seed(3)
    got = time_shared_dropout(x.clone(), 0.5, True, steps=steps, inplace=True)
    torch.testing.assert_close(got, want)
    assert (want == 0).any() and (want != 0).any()


def test_variable_grn_of_scalars_matches_the_explicit_skip_in_training_with_gradients():
    # dropout on (training): the fused skip and in-place steps give the same values and
    # gradients as the explicit embedding and skip with the same random masks
    torch.manual_seed(0)
    grn = VariableGRN(n_vars=3, input_size=4, output_size=6, dropout=0.3).train()
    xv = torch.randn(3, 10, 1)  # (V, M, 1), M = 2 sequences x 5 steps
    embed_w, embed_b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    skip_w, skip_b = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6)
    g = torch.randn(3, 10, 6)
    torch.manual_seed(1)
    got = grn.forward_scalars(xv, embed_w, embed_b, skip_w, skip_b, steps=5)
    got_grads = torch.autograd.grad(got, [embed_w, skip_w, grn.fc2_w, grn.glu_w], g)
    torch.manual_seed(1)
    emb = xv * embed_w.unsqueeze(1) + embed_b.unsqueeze(1)  # (V, M, H)
    want = grn(emb, xv * skip_w.unsqueeze(1) + skip_b.unsqueeze(1), steps=5)
    want_grads = torch.autograd.grad(want, [embed_w, skip_w, grn.fc2_w, grn.glu_w], g)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)
