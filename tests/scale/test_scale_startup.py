"""FSDP start-up without full copies: generator twins built tensor by tensor, the reference
and the policy sharded from a host-side model (1-rank gloo group, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer
from mgrpo.parallel.distributed import init_distributed, shutdown
from mgrpo.train.layout.layouts import shard_run_models
from mgrpo.train.layout.momentum import ShardedMomentum
from mgrpo.train.layout.precision import inference_twin

TOK = build_char_tokenizer()


def _model(tie: bool = False):
    model = build_tiny_model(TOK, arch="qwen3", seed=0, dtype=torch.float32)
    if tie:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_twin_is_a_cast_copy_with_its_own_storage(dtype) -> None:
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    twin = inference_twin(model, device=torch.device("cpu"), dtype=dtype)
    src = dict(model.named_parameters())
    for name, p in twin.named_parameters():
        assert p.dtype == dtype and not p.requires_grad
        assert torch.equal(p, src[name].detach().to(dtype))
        assert p.data_ptr() != src[name].data_ptr()  # never an alias, even in the same dtype
        assert src[name].requires_grad  # the source is untouched
    src_buffers = dict(model.named_buffers())
    for name, b in twin.named_buffers():  # tables (RoPE inv_freq) keep their own dtype
        assert b.dtype == src_buffers[name].dtype and torch.equal(b, src_buffers[name]), name
        assert b.data_ptr() != src_buffers[name].data_ptr()
    assert not twin.training
    with torch.no_grad():  # writing the twin leaves the source alone
        for p in twin.parameters():
            p.zero_()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    ids = torch.tensor([TOK.encode("1+2=")])
    twin = inference_twin(model, device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(twin(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_inference_twin_keeps_tied_weights_tied() -> None:
    twin = inference_twin(_model(tie=True), device=torch.device("cpu"), dtype=torch.bfloat16)
    assert twin.lm_head.weight is twin.model.embed_tokens.weight


@pytest.fixture
def one_rank_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed(fsdp=True, device="cpu", timeout_s=60)
    yield ctx
    shutdown(ctx)
    assert not dist.is_initialized()


def test_shard_run_models_places_every_model(one_rank_group) -> None:
    ctx = one_rank_group
    policy = _model()
    full = {n: p.detach().clone() for n, p in policy.named_parameters()}
    models = shard_run_models(ctx, policy, gen_dtype=torch.float32, with_reference=True,
                              with_momentum=True, device=torch.device("cpu"))
    # policy and reference: every parameter a DTensor shard, values of the loaded model
    for model, grad in ((models.policy, True), (models.reference, False)):
        for name, p in model.named_parameters():
            assert hasattr(p, "to_local"), name
            assert p.requires_grad is grad
            torch.testing.assert_close(p.full_tensor(), full[name], rtol=0, atol=0)
    # generators: plain tensors, frozen, equal to the loaded model
    for gen in (models.policy_full, models.momentum_generator):
        for name, p in gen.named_parameters():
            assert not hasattr(p, "to_local") and not p.requires_grad
            assert torch.equal(p, full[name])
    # the momentum master starts as the policy
    momentum = ShardedMomentum(models.policy, models.momentum_generator, ctx)
    for t, (name, _) in zip(momentum.sharded, policy.named_parameters(), strict=True):
        torch.testing.assert_close(t.full_tensor(), full[name], rtol=0, atol=0)


def test_fully_shard_gets_a_mesh_on_the_runs_device(one_rank_group, monkeypatch) -> None:
    """Without a mesh FSDP2 shards onto the current accelerator (CUDA on a GPU box) whatever
    device the run computes on; every `fully_shard` call must get the run's device type."""
    import mgrpo.parallel.fsdp as fsdp

    api = fsdp._fsdp_api()
    meshes = []

    def recording(module, **kwargs):
        meshes.append(kwargs.get("mesh"))
        return api[0](module, **kwargs)

    monkeypatch.setattr(fsdp, "_fsdp_api", lambda: (recording, *api[1:]))
    policy = _model()
    shard_run_models(one_rank_group, policy, gen_dtype=torch.float32, with_reference=True,
                     with_momentum=False, device=torch.device("cpu"))
    layers = len(policy.model.layers)
    assert len(meshes) == 2 * (layers + 1)  # every layer and the root, policy and reference
    assert all(m is not None and m.device_type == "cpu" and m.size() == 1 for m in meshes)
    assert all(p.device.type == "cpu" for p in policy.parameters())


def test_generator_refresh_gathers_in_the_generator_dtype(one_rank_group, monkeypatch) -> None:
    """The fp32 master is cast shard by shard, then all-gathered in bf16 (half the bytes);
    the generator still equals the master cast to bf16."""
    import mgrpo.parallel.fsdp as fsdp
    from mgrpo.parallel.fsdp import policy_refresher

    policy = _model()
    models = shard_run_models(one_rank_group, policy, gen_dtype=torch.bfloat16,
                              with_reference=False, with_momentum=True,
                              device=torch.device("cpu"))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)
    gathered = []
    full = fsdp.full_tensor

    def recording(t):
        gathered.append(t.dtype)
        return full(t)

    monkeypatch.setattr(fsdp, "full_tensor", recording)
    policy_refresher(one_rank_group, policy, models.policy_full)()
    ShardedMomentum(policy, models.momentum_generator, one_rank_group).refresh()
    assert gathered and set(gathered) == {torch.bfloat16}
    gen = dict(models.policy_full.named_parameters())
    for name, p in policy.named_parameters():
        assert torch.equal(gen[name], p.full_tensor().detach().to(torch.bfloat16)), name


def test_reference_root_reshards_after_its_forward(one_rank_group) -> None:
    """FSDP2 leaves a root unsharded after forward for the backward it expects; the frozen
    reference has no backward, so its embeddings / LM head must not stay gathered."""
    from mgrpo.parallel.fsdp import SCORE_METHOD

    models = shard_run_models(one_rank_group, _model(), gen_dtype=torch.float32,
                              with_reference=True, with_momentum=False,
                              device=torch.device("cpu"))
    ref = models.reference
    response = torch.tensor([TOK.encode("3")])
    with torch.no_grad():
        getattr(ref, SCORE_METHOD)([TOK.encode("1+2=")], response,
                                   torch.ones_like(response, dtype=torch.bool), 1.0,
                                   with_grad=False)
    for name, p in ref.named_parameters():
        assert hasattr(p, "to_local"), f"{name} still unsharded after the forward"
