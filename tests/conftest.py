"""Shared pytest setup: CPU-only determinism, GPU tests skipped without CUDA, and where the
data sets that are not in the wheel come from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# gsm8k_train and mbppplus are fetched on first use (mgrpo.data.fetched), never in a test:
# tests read the copies in $MGRPO_DATA_DIR, by default the machine's shared data directory
# (`shared/data` beside the checkout, or /work/shared/data); without one their tests skip.
SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data"))
if "MGRPO_DATA_DIR" not in os.environ:
    for _shared in SHARED_DATA:
        if _shared.is_dir():
            os.environ["MGRPO_DATA_DIR"] = str(_shared)
            break


def pytest_configure(config: pytest.Config) -> None:
    # Tiny test models are fastest on one thread (2 threads were ~30x slower on a busy
    # 2-core box); subprocess runs pass trainer.threads=1 for the same reason.
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("MGRPO_REQUIRE_VLLM") and any("vllm" in i.keywords for i in items):
        # CI's vLLM run: a vLLM that does not import is an error there, not a skip
        from mgrpo.rollout.vllm_engine import vllm_unavailable_reason

        reason = vllm_unavailable_reason()
        if reason:
            raise pytest.UsageError(f"MGRPO_REQUIRE_VLLM is set but {reason}")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
