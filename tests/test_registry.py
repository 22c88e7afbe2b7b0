"""The one registry helper (mgrpo.registry) and the registries built on it."""

from __future__ import annotations

import pytest

from mgrpo.registry import DuplicateNameError, Registry, UnknownNameError


def test_register_at_the_definition_and_look_up() -> None:
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b() -> str:
        return "b"

    reg.register("a", len)
    assert reg.get("b") is b and reg["a"] is len
    assert list(reg) == ["b", "a"]  # registration order
    assert reg.names() == ("a", "b")  # sorted, as the messages list them
    assert "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.items() == [("b", b), ("a", len)]


def test_duplicate_names_are_refused() -> None:
    reg: Registry = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(DuplicateNameError, match="widget 'a' is already registered"):
        reg.register("a", 2)
    with pytest.raises(DuplicateNameError):
        reg.register("a")(3)
    assert reg.get("a") == 1


@pytest.mark.parametrize("name", ["c", None, 3])
def test_unknown_names_list_the_valid_ones(name: object) -> None:
    reg: Registry = Registry("widget")
    reg.register("b", 1)
    reg.register("a", 2)
    with pytest.raises(UnknownNameError, match=rf"unknown widget {name!r}; valid names: a, b$"):
        reg.get(name)  # type: ignore[arg-type]
    assert issubclass(UnknownNameError, ValueError)


@pytest.mark.parametrize("name", ["", "  ", None])
def test_empty_names_are_refused(name: object) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Registry("widget").register(name, 1)  # type: ignore[arg-type]


def test_unregister() -> None:
    reg: Registry = Registry("widget")
    reg.register("a", 1)
    assert reg.unregister("a") == 1 and "a" not in reg
    with pytest.raises(UnknownNameError):
        reg.unregister("a")


def test_every_registry_uses_the_helper() -> None:
    # lazy imports keep this file's own import light; each registry is one Registry
    from mgrpo.core.advantages import ADVANTAGE_ESTIMATORS
    from mgrpo.core.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS
    from mgrpo.core.voting import VOTE_TIES
    from mgrpo.rollout import ENGINES

    for registry, names in [(ADVANTAGE_ESTIMATORS, {"grpo", "rloo", "dr_grpo"}),
                            (LOSS_AGGREGATIONS, {"token-mean", "seq-mean-token-mean",
                                                 "seq-mean-token-sum-norm"}),
                            (KL_ESTIMATORS, {"k3", "low_var_kl"}),
                            (VOTE_TIES, {"policy-first", "momentum-first", "random"}),
                            (ENGINES, {"fast", "hf"})]:
        assert isinstance(registry, Registry)
        assert names <= set(registry)
