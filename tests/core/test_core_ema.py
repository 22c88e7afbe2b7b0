"""ema_update_: m = 1 no-op, m = 0 copy, formula vs a loop, mixed dtypes, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgrpo.core.ema import cast_chunks, ema_update_

FAST = settings(deadline=None, max_examples=50, derandomize=True)


def _tensors(seed: int, dtypes: list[torch.dtype]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (), (2, 1, 3)]
    return [
        torch.randn(shapes[i % len(shapes)], generator=g).to(dtype)
        for i, dtype in enumerate(dtypes)
    ]


dtype_lists = st.lists(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]), max_size=6)


@FAST
@given(seed=st.integers(0, 2**31 - 1), dtypes=dtype_lists)
def test_momentum_one_is_a_no_op_and_zero_is_a_copy(seed: int, dtypes) -> None:
    target = _tensors(seed, dtypes)
    source = _tensors(seed + 1, dtypes)
    before = [t.clone() for t in target]
    ema_update_(target, source, 1.0)
    assert all(torch.equal(t, b) for t, b in zip(target, before, strict=True))
    ema_update_(target, source, 0.0)
    assert all(torch.equal(t, s) for t, s in zip(target, source, strict=True))


@FAST
@given(seed=st.integers(0, 2**31 - 1), momentum=st.floats(0.0, 1.0), n=st.integers(1, 6))
def test_matches_loop_reference(seed: int, momentum: float, n: int) -> None:
    target = _tensors(seed, [torch.float64] * n)
    source = _tensors(seed + 1, [torch.float64] * n)
    expected = [momentum * t + (1 - momentum) * s for t, s in zip(target, source, strict=True)]
    ema_update_(iter(target), iter(source), momentum)  # any iterable, e.g. .parameters()
    for t, e in zip(target, expected, strict=True):
        torch.testing.assert_close(t, e, rtol=1e-12, atol=1e-12)


@FAST
@given(seed=st.integers(0, 2**31 - 1), momentum=st.floats(0.0, 1.0))
def test_fp32_target_with_bf16_source(seed: int, momentum: float) -> None:
    target = _tensors(seed, [torch.float32] * 3)
    source = _tensors(seed + 1, [torch.bfloat16] * 3)
    expected = [
        momentum * t + (1 - momentum) * s.float() for t, s in zip(target, source, strict=True)
    ]
    ema_update_(target, source, momentum)
    for t, e in zip(target, expected, strict=True):
        assert t.dtype == torch.float32
        torch.testing.assert_close(t, e, rtol=1e-6, atol=1e-6)


def test_fp32_ema_keeps_moving_where_bf16_would_stall() -> None:
    """docs/design.md §3: at m = 0.99 a bf16 EMA silently stops moving; the fp32 one does not."""
    source = [torch.full((4,), 1.01, dtype=torch.bfloat16)]
    fp32 = [torch.ones(4)]
    bf16 = [torch.ones(4, dtype=torch.bfloat16)]
    for _ in range(10):
        ema_update_(fp32, source, 0.99)
        ema_update_(bf16, source, 0.99)
    assert float(fp32[0][0]) > 1.0005
    assert float(bf16[0][0]) == 1.0


def test_works_on_parameters_without_recording_grad() -> None:
    g = torch.Generator().manual_seed(0)
    momentum_model = torch.nn.Linear(3, 2)
    policy = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in (*momentum_model.parameters(), *policy.parameters()):
            p.copy_(torch.randn(p.shape, generator=g))
    expected = [
        0.9 * k + 0.1 * q
        for k, q in zip(momentum_model.parameters(), policy.parameters(), strict=True)
    ]
    ema_update_(momentum_model.parameters(), policy.parameters(), 0.9)
    for p, e in zip(momentum_model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e.detach())
        assert p.grad_fn is None and p.requires_grad


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf"), True])
def test_bad_momentum_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="momentum"):
        ema_update_([torch.zeros(2)], [torch.ones(2)], bad)


def test_mismatches_raise() -> None:
    with pytest.raises(ValueError, match="same number of tensors"):
        ema_update_([torch.zeros(2)], [torch.ones(2), torch.ones(2)], 0.5)
    with pytest.raises(ValueError, match="shape mismatch at index 1"):
        ema_update_([torch.zeros(2), torch.zeros(3)], [torch.ones(2), torch.ones(4)], 0.5)
    with pytest.raises(ValueError, match="floating"):
        ema_update_([torch.zeros(2, dtype=torch.long)], [torch.ones(2)], 0.5)
    target = [torch.zeros(2)]
    with pytest.raises(ValueError):
        ema_update_(target, [torch.ones(2), torch.ones(2)], 0.5)
    assert torch.equal(target[0], torch.zeros(2))  # validated before any update


def _ema_all_casts_at_once(target, source, m: float) -> None:
    """The update as a single fused pass over sources ALL cast up front (one full-model
    temporary): the reference the chunked update must equal bitwise."""
    cast = [s.to(t.dtype) for t, s in zip(target, source, strict=True)]
    if m == 0.0:
        torch._foreach_copy_(target, cast)
    elif m != 1.0:
        torch._foreach_mul_(target, m)
        torch._foreach_add_(target, cast, alpha=1.0 - m)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    momentum=st.sampled_from([0.0, 0.5, 0.99, 0.999, 1.0]),
    source_dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    chunk_bytes=st.integers(1, 200),
    n=st.integers(1, 8),
)
def test_chunked_casts_equal_casting_everything_at_once(
    seed: int, momentum: float, source_dtype, chunk_bytes: int, n: int
) -> None:
    target = _tensors(seed, [torch.float32] * n)
    source = _tensors(seed + 1, [source_dtype] * n)
    expected = [t.clone() for t in target]
    _ema_all_casts_at_once(expected, source, momentum)
    ema_update_(target, source, momentum, chunk_bytes=chunk_bytes)
    assert all(torch.equal(t, e) for t, e in zip(target, expected, strict=True))


@FAST
@given(sizes=st.lists(st.integers(1, 100), max_size=12), chunk_bytes=st.integers(1, 150))
def test_cast_chunks_cover_every_tensor_once_within_the_bound(sizes, chunk_bytes: int) -> None:
    chunks = cast_chunks(sizes, chunk_bytes)
    assert [i for c in chunks for i in c] == list(range(len(sizes)))
    for c in chunks:
        total = sum(sizes[i] for i in c)
        assert total <= chunk_bytes or len(c) == 1  # only a lone oversized tensor exceeds it
        assert len(c) > 0


def test_cast_chunks_rejects_a_non_positive_bound() -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        cast_chunks([4], 0)


def test_cosine_momentum_schedule() -> None:
    import math

    from mgrpo.core.ema import cosine_momentum

    def alpha(t, T, a0, a1):  # the released schedule, read literally
        t = max(0, min(t - 1, T))
        return a1 + 0.5 * (a0 - a1) * (1 + math.cos(math.pi * t / T))

    for step in (0, 1, 2, 50, 100, 101, 500):
        assert cosine_momentum(step, 100, 0.01, 1e-5) == pytest.approx(1 - alpha(step, 100, 0.01, 1e-5))
    assert cosine_momentum(1, 100, 0.01, 1e-5) == pytest.approx(0.99)
    assert cosine_momentum(101, 100, 0.01, 1e-5) == pytest.approx(1 - 1e-5)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(1, 0, 0.01, 0.0)
    with pytest.raises(ValueError, match="alpha_start"):
        cosine_momentum(1, 10, 1.5, 0.0)
