"""RolloutBatch.select / RolloutBatch.cat: row selection and prompt-major concatenation."""

from __future__ import annotations

import torch

from mgrpo.rollout import RolloutBatch


def _batch(prompts: int, n: int, lengths: list[int], first_id: int) -> RolloutBatch:
    R, T = prompts * n, max(lengths)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]  # (R, T)
    ids = (torch.arange(R * T).view(R, T) + first_id) * mask
    return RolloutBatch(
        prompt_index=torch.arange(prompts).repeat_interleave(n), response_ids=ids,
        response_mask=mask, logprobs=-mask.float(), entropies=mask.float() * 0.5,
        lengths=mask.sum(1), finish_reasons=["stop" if n_ < T else "length" for n_ in lengths],
    )


def test_select_trims_to_the_longest_selected_response():
    b = _batch(2, 2, [1, 4, 2, 3], 10)
    sub = b.select(torch.tensor([2, 0]))
    assert sub.response_ids.shape == (2, 2)
    assert sub.prompt_index.tolist() == [1, 0]
    assert sub.lengths.tolist() == [2, 1]
    assert sub.finish_reasons == ["stop", "stop"]
    assert torch.equal(sub.response_ids, b.response_ids[[2, 0], :2])
    assert b.select(torch.tensor([], dtype=torch.long)).response_ids.shape == (0, 1)


def test_cat_shifts_prompt_indices_and_pads():
    a = _batch(1, 2, [3, 1], 0)  # one prompt
    b = _batch(2, 1, [5, 2], 100)  # two prompts
    c = _batch(1, 1, [1], 200)
    out = RolloutBatch.cat([a, b, c])
    assert out.prompt_index.tolist() == [0, 0, 1, 2, 3]
    assert out.response_ids.shape == (5, 5)
    assert out.lengths.tolist() == [3, 1, 5, 2, 1]
    assert torch.equal(out.response_ids[:2, :3], a.response_ids)
    assert not out.response_mask[:2, 3:].any() and (out.response_ids[:2, 3:] == 0).all()
    assert out.finish_reasons == a.finish_reasons + b.finish_reasons + c.finish_reasons
    # select undoes cat
    back = out.select(torch.tensor([2, 3]))
    assert torch.equal(back.response_ids, b.response_ids)
