"""score_responses: padded batch == per-sequence, chunking invariance, grad == naive grad."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.rollout import score_responses
from mgrpo.rollout.scoring import ChunkedTokenLogProb

TOK = build_char_tokenizer()


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15], [16, 17]]
    lengths = [6, 3, 5, 1]
    resp = torch.randint(4, len(TOK), (4, 6), generator=g)
    mask = torch.arange(6)[None] < torch.tensor(lengths)[:, None]
    resp = resp.masked_fill(~mask, TOK.pad_token_id)
    return prompts, resp, mask


def _naive(model, prompts, resp, mask, temperature):
    """Per sequence, unpadded, full fp32 logits: (sum of logp, list of logp, list of H)."""
    logps, ents = [], []
    for i, p in enumerate(prompts):
        n = int(mask[i].sum())
        logits = model(torch.tensor([p + resp[i, :n].tolist()])).logits[0, len(p) - 1 : -1]
        ls = F.log_softmax(logits.float() / temperature, dim=-1)
        logps.append(ls.gather(1, resp[i, :n, None])[:, 0])
        ents.append(-(ls.exp() * ls).sum(-1))
    return logps, ents


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_padded_batch_equals_per_sequence(arch):
    model = build_tiny_model(TOK, arch=arch)
    prompts, resp, mask = _data()
    with torch.no_grad():
        ref_lp, ref_ent = _naive(model, prompts, resp, mask, 0.7)
    for chunk in (1, 5, 1024):
        logp, ent = score_responses(model, prompts, resp, mask, 0.7, chunk_tokens=chunk)
        assert logp.shape == ent.shape == resp.shape and logp.dtype == torch.float32
        assert not logp.requires_grad
        for i in range(len(prompts)):
            n = int(mask[i].sum())
            torch.testing.assert_close(logp[i, :n], ref_lp[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(ent[i, :n], ref_ent[i], atol=1e-5, rtol=0)
        assert (logp[~mask] == 0).all() and (ent[~mask] == 0).all()


def test_with_grad_matches_naive_gradient():
    model = build_tiny_model(TOK, arch="qwen2")  # qwen2: biased projections too
    prompts, resp, mask = _data(1)
    weights = torch.linspace(-1, 2, resp.numel()).view_as(resp)  # arbitrary upstream grad
    logp, ent = score_responses(model, prompts, resp, mask, 1.3, chunk_tokens=4, with_grad=True)
    assert logp.requires_grad and not ent.requires_grad
    (logp * weights).sum().backward()
    ours = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    ref_lp, _ = _naive(model, prompts, resp, mask, 1.3)
    sum((lp * weights[i, : lp.numel()]).sum() for i, lp in enumerate(ref_lp)).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(ours[k], p.grad, atol=1e-5, rtol=1e-4, msg=k)
    assert ours["lm_head.weight"].abs().sum() > 0


def test_chunked_function_gradcheck_fp64():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 11, (7,), generator=g)

    def f(h, w, b):  # fp64 in, fp32 out: compare against the same math done naively
        return ChunkedTokenLogProb.apply(h, w, b, y, 0.9, 3)[0].double()

    out = f(h, w, b)
    ref = F.log_softmax((h @ w.T + b) / 0.9, -1).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    gout = torch.randn(7, dtype=torch.float64, generator=g)
    ours = torch.autograd.grad(out, (h, w, b), gout)
    theirs = torch.autograd.grad(ref, (h, w, b), gout)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_score_bad_input():
    model = build_tiny_model(TOK)
    prompts, resp, mask = _data()
    with pytest.raises(ValueError, match="temperature"):
        score_responses(model, prompts, resp, mask, 0.0)
    with pytest.raises(ValueError, match="prompt_ids"):
        score_responses(model, prompts[:2], resp, mask, 1.0)
    with pytest.raises(ValueError, match="mask"):
        score_responses(model, prompts, resp, mask[:, :3], 1.0)
    empty_logp, _ = score_responses(model, prompts, resp, torch.zeros_like(mask), 1.0)
    assert (empty_logp == 0).all()


class _MatmulDtypes(TorchDispatchMode):
    """Records the input dtype of every matrix product dispatched inside the mode."""

    PRODUCTS = ("aten.mm.", "aten.addmm.", "aten.addmm_.", "aten.bmm.", "aten.matmul.", "aten.linear.")

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.PRODUCTS):
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def _head_inputs():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(9, 16, generator=g, requires_grad=True)
    w = torch.randn(40, 16, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True)
    return h, w, b, torch.randint(0, 40, (9,), generator=g)


def test_chunked_backward_runs_its_products_in_the_autocast_dtype() -> None:
    h, w, b, y = _head_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, _ = ChunkedTokenLogProb.apply(h, w, b, y, 0.8, 4)
    recorder = _MatmulDtypes()
    with recorder:  # backward() runs outside the autocast block, as in the trainer
        logp.sum().backward()
    assert len(recorder.dtypes) >= 3 * 3  # 3 chunks x (recompute, dh, dW)
    assert set(recorder.dtypes) == {torch.bfloat16}
    assert h.grad.dtype == w.grad.dtype == b.grad.dtype == torch.float32
    ref = [t.detach().clone().requires_grad_() for t in (h, w, b)]
    ChunkedTokenLogProb.apply(*ref, y, 0.8, 4)[0].sum().backward()
    for ours, fp32 in zip((h, w, b), ref, strict=True):  # bf16 rounding, same gradient
        torch.testing.assert_close(ours.grad, fp32.grad, atol=0.1, rtol=0.05)


def test_chunked_backward_without_autocast_stays_fp32() -> None:
    h, w, b, y = _head_inputs()
    logp, _ = ChunkedTokenLogProb.apply(h, w, b, y, 0.8, 4)
    recorder = _MatmulDtypes()
    with recorder:
        logp.sum().backward()
    assert recorder.dtypes and set(recorder.dtypes) == {torch.float32}


def test_chunked_backward_with_bf16_weights_and_no_autocast_runs_bf16_products() -> None:
    """The FSDP path: bf16 weights and hidden states, no autocast. The weight gradient's
    (V, c) x (c, H) products run in bf16 (accumulated in fp32), not as fp32 copies."""
    h, w, b, y = _head_inputs()
    hb, wb, bb = (t.detach().bfloat16().requires_grad_() for t in (h, w, b))
    logp, _ = ChunkedTokenLogProb.apply(hb, wb, bb, y, 0.8, 4)
    recorder = _MatmulDtypes()
    with recorder:
        logp.sum().backward()
    assert len(recorder.dtypes) >= 3 * 3 and set(recorder.dtypes) == {torch.bfloat16}
    assert hb.grad.dtype == wb.grad.dtype == bb.grad.dtype == torch.bfloat16
    ref = [t.detach().double().requires_grad_() for t in (hb, wb, bb)]
    ChunkedTokenLogProb.apply(*ref, y, 0.8, 4)[0].sum().backward()
    for ours, exact in zip((hb, wb, bb), ref, strict=True):  # bf16 rounding of the same grad
        torch.testing.assert_close(ours.grad.double(), exact.grad, atol=0.1, rtol=0.05)
