"""A resume on W ranks hashes the newest checkpoint once in total, not once per rank (at 4B
with FSDP a checkpoint is ~72 GB: W full reads before the first collective). Two gloo ranks
(spawned processes) count the bytes each feeds to sha256 while they pick the checkpoint to
resume from (`resume.newest_checkpoint`, what the trainer calls)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

import mgrpo.train.run.checkpoint as checkpoint
from mgrpo.models.tiny import build_tiny_model
from mgrpo.models.tokenizer import build_char_tokenizer


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_checkpoints(root, steps=(1, 2)) -> None:
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, arch="llama", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[3, 4, 5]])).logits.sum().backward()
    optimizer.step()  # AdamW state: a second large file
    for step in steps:
        checkpoint.save_checkpoint(root, step, model=model, tokenizer=tok, optimizer=optimizer,
                                   trainer_state={"step": step}, keep_last=5)


def _sizes(path) -> dict[str, int]:
    files = json.loads((path / checkpoint.MANIFEST_FILE).read_text())["files"]
    return {name: meta["size"] for name, meta in files.items()}


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from mgrpo.parallel import distributed as D
    from mgrpo.train.run import checkpoint as ckpt
    from mgrpo.train.run.resume import newest_checkpoint

    hashed: list[str] = []
    sha256 = ckpt._sha256

    def counting(path):
        hashed.append(path.name)
        return sha256(path)

    ckpt._sha256 = counting
    ctx = D.init_distributed(fsdp=False, device="cpu", timeout_s=60)
    try:
        found = newest_checkpoint(ctx, Path(root))
        verified_by_both = list(hashed)
        again = ckpt.verify_checkpoint(found) if found else None  # remembered: not re-read
        torch.save({"found": str(found), "hashed": verified_by_both, "again": again,
                    "rehashed": hashed[len(verified_by_both):]},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        D.shutdown(ctx)


def _resume_on_two_ranks(tmp_path, root) -> list[dict]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    mp.spawn(_worker, args=(2, _port(), str(root), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_two_ranks_hash_the_newest_checkpoint_once_in_total(tmp_path) -> None:
    root = tmp_path / "checkpoints"
    _write_checkpoints(root)
    sizes = _sizes(root / "step-2")
    ranks = _resume_on_two_ranks(tmp_path, root)
    assert [r["found"] for r in ranks] == [str(root / "step-2")] * 2
    hashed = [sum(sizes[name] for name in r["hashed"]) for r in ranks]
    assert sorted(n for r in ranks for n in r["hashed"]) == sorted(sizes)  # each file once
    assert sum(hashed) == sum(sizes.values())  # one rank alone used to hash all of it, twice
    assert max(hashed) <= sum(sizes.values()) / 2 + max(sizes.values())
    assert all(r["again"] is None and r["rehashed"] == [] for r in ranks)


def test_a_file_one_rank_finds_corrupted_makes_every_rank_skip_that_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    _write_checkpoints(root)
    sizes = _sizes(root / "step-2")
    owned_by_1 = checkpoint.hash_share({n: {"size": s} for n, s in sizes.items()}, 1, 2)
    victim = root / "step-2" / owned_by_1[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only rank 1's hash can tell
    victim.write_bytes(bytes(data))
    ranks = _resume_on_two_ranks(tmp_path, root)  # each warns "checksum mismatch"
    assert [r["found"] for r in ranks] == [str(root / "step-1")] * 2


def test_the_shares_cover_every_file_once_and_balance_the_bytes() -> None:
    files = {f"f{i}": {"size": s} for i, s in enumerate([900, 10, 500, 500, 3, 77, 400])}
    for world in (1, 2, 3, 8):
        shares = [checkpoint.hash_share(files, r, world) for r in range(world)]
        assert sorted(n for share in shares for n in share) == sorted(files)
        loads = [sum(files[n]["size"] for n in share) for share in shares]
        assert max(loads) <= sum(loads) / world + 900
