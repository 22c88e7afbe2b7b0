"""Pure M-GRPO math on tensors and lists: no I/O, no config objects, no torch.distributed.

Imports only torch and the standard library (enforced by ``tests/core/test_core_imports.py``).
Semantics: docs/design.md §3; numeric conventions: :mod:`mgrpo.core.constants`.
"""

from mgrpo.core.advantages import (
    ADVANTAGE_ESTIMATORS,
    dr_grpo_advantages,
    get_advantage_estimator,
    group_advantages,
    rloo_advantages,
)
from mgrpo.core.ema import ema_update_
from mgrpo.core.entropy import token_entropy, trajectory_entropy
from mgrpo.core.filtering import iqr_bounds, iqr_keep_mask
from mgrpo.core.losses import LOSS_AGGREGATIONS, get_loss_aggregation, policy_loss
from mgrpo.core.voting import Vote, majority_vote, vote_groups

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "Vote",
    "dr_grpo_advantages",
    "ema_update_",
    "get_advantage_estimator",
    "get_loss_aggregation",
    "group_advantages",
    "iqr_bounds",
    "iqr_keep_mask",
    "majority_vote",
    "vote_groups",
    "policy_loss",
    "rloo_advantages",
    "token_entropy",
    "trajectory_entropy",
]
