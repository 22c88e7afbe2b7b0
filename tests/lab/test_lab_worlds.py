"""Named lab worlds (lab.worlds), SFT answer noise (lab.noise), `mgrpo lab --world/list/measure`."""

from __future__ import annotations

import random
import re

import pytest

from mgrpo.data.arithmetic import evaluate_expression, worked_solution
from mgrpo.data.datasets import PromptRecord
from mgrpo.lab import QUICK_LAB_CONFIG, build_lab_model
from mgrpo.lab.build import sft_problems, sft_targets
from mgrpo.lab.cache import read_manifest, sha256_file
from mgrpo.lab.config import DEFAULT_LAB_CONFIG
from mgrpo.lab.measure import extract_boxed_int
from mgrpo.lab.noise import slipped_solution
from mgrpo.lab.worlds import DEFAULT_WORLD, WORLDS, lab_world, world_of_model_name

# the cache key of the demo's world (`model.name: lab`): the cached model of every existing
# checkout stays valid only while this holds
DEFAULT_HASH = "77e5713f8f57371a"


def record(question: str) -> PromptRecord:
    return PromptRecord(id="q", question=question, answer=str(evaluate_expression(question)))


def test_default_world_is_the_demo_world_with_its_hash():
    assert DEFAULT_LAB_CONFIG.config_hash() == DEFAULT_HASH
    assert WORLDS[DEFAULT_WORLD].config is DEFAULT_LAB_CONFIG
    assert "answer_noise" not in DEFAULT_LAB_CONFIG.to_dict()  # optional fields at default
    hashes = [w.config.config_hash() for w in WORLDS.values()]
    assert len(set(hashes)) == len(hashes)  # every world its own cache entry


def test_world_names_resolve():
    assert world_of_model_name("lab") is WORLDS[DEFAULT_WORLD]
    assert world_of_model_name("lab:default") is WORLDS[DEFAULT_WORLD]
    assert world_of_model_name("lab:noise30").name == "noise30"
    assert world_of_model_name("tiny") is None and world_of_model_name("labx") is None
    with pytest.raises(ValueError, match="unknown lab world 'nope'; known: default"):
        world_of_model_name("lab:nope")
    with pytest.raises(ValueError, match="unknown lab world ''"):
        lab_world("")


def test_every_world_keeps_the_default_task():
    # the lab data sources (data.train: lab, validation.data: lab) draw the default task
    assert all(w.config.task == DEFAULT_LAB_CONFIG.task for w in WORLDS.values())


@pytest.mark.parametrize("question", ["3+4-2+1", "9-8-7-6", "2*3+4-1", "2*3*4", "5+6"])
def test_slipped_solution_has_one_slip_propagated(question):
    rng = random.Random(0)
    clean = worked_solution(record(question))
    for _ in range(30):
        text = slipped_solution(record(question), rng, noise_max=2)
        value = extract_boxed_int(text)
        # the slip is in the carried +/- chain (or the last step): the answer is off by it
        assert 1 <= abs(value - evaluate_expression(question)) <= 2
        steps = text.split(".")[0].split(",")
        assert len(steps) == len(clean.split(".")[0].split(","))
        # every step after the slip is right arithmetic on the wrong value
        wrong = 0
        for step in steps:
            a, op, b, r = re.fullmatch(r"(-?\d+)([-+*])(\d+)=(-?\d+)", step).groups()
            exact = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            wrong += exact != int(r)
        assert wrong == 1
        assert int(steps[-1].split("=")[1]) == value


def test_slipped_single_operand_and_bad_noise_max():
    assert extract_boxed_int(slipped_solution(record("7"), random.Random(1), 1)) in (6, 8)
    with pytest.raises(ValueError, match="noise_max"):
        slipped_solution(record("1+2"), random.Random(0), 0)


def test_sft_targets_noise_rate_and_determinism():
    config = QUICK_LAB_CONFIG.replace(answer_noise=0.3, sft_steps=50)
    records = sft_problems(config, 1000)
    clean = [worked_solution(r) for r in records]
    assert sft_targets(records, QUICK_LAB_CONFIG) == clean
    noisy = sft_targets(records, config)
    assert noisy == sft_targets(records, config)
    rate = sum(a != b for a, b in zip(noisy, clean)) / len(clean)
    assert 0.25 < rate < 0.35, rate


def test_answer_noise_validation_and_hash():
    with pytest.raises(ValueError, match="answer_noise"):
        QUICK_LAB_CONFIG.replace(answer_noise=1.0)
    with pytest.raises(ValueError, match="noise_max"):
        QUICK_LAB_CONFIG.replace(noise_max=0)
    assert QUICK_LAB_CONFIG.replace(answer_noise=0.0).config_hash() == QUICK_LAB_CONFIG.config_hash()
    assert QUICK_LAB_CONFIG.replace(answer_noise=0.2).config_hash() != QUICK_LAB_CONFIG.config_hash()


def test_noisy_world_builds_deterministically(tmp_path):
    config = QUICK_LAB_CONFIG.replace(answer_noise=0.5)
    a = build_lab_model(config, cache_dir=tmp_path / "a", progress=False)
    b = build_lab_model(config, cache_dir=tmp_path / "b", progress=False)
    assert sha256_file(a / "model.safetensors") == sha256_file(b / "model.safetensors")
    assert read_manifest(a)["config"]["answer_noise"] == 0.5
    clean = build_lab_model(QUICK_LAB_CONFIG, cache_dir=tmp_path / "a", progress=False)
    assert sha256_file(clean / "model.safetensors") != sha256_file(a / "model.safetensors")


def test_model_name_lab_world_builds_that_world(monkeypatch):
    import mgrpo.lab as lab
    from mgrpo.models.loading import embedded_model_dir

    seen = []
    monkeypatch.setattr(lab, "build_lab_model", lambda config=None: seen.append(config) or "/x")
    assert str(embedded_model_dir("lab:noise30")) == "/x"
    assert str(embedded_model_dir("lab")) == "/x"
    assert seen == [WORLDS["noise30"].config, DEFAULT_LAB_CONFIG]
    with pytest.raises(ValueError, match="unknown lab world"):
        embedded_model_dir("lab:nope")


def test_cli_list_info_world_and_errors(capsys, tmp_path):
    from mgrpo.cli import main

    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in WORLDS) and DEFAULT_HASH in out
    assert main(["lab", "info", "--world", "noise30", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "answer noise 30%" in out and "mgrpo lab build --world noise30" in out
    assert main(["lab", "info", "--world", "nope"]) == 2
    assert "unknown lab world 'nope'" in capsys.readouterr().err
    assert main(["lab", "build", "--world", "noise30", "--quick"]) == 2
    assert "exclusive" in capsys.readouterr().err


def test_lab_long_recipe_is_the_probed_protocol():
    """lab-long = the lab-collapse recipe on the noise30-4op50 world, trained on the train
    split and validated on the held-out val split at T = 0.8 (the study's probes' command)."""
    from mgrpo.config import config_to_dict, resolve_config

    probe = ["model.name=lab:noise30-4op50", "data.train=lab", "data.limit=4096",
             "validation.temperature=0.8", "optim.lr=1.5e-5", "optim.schedule=constant",
             "trainer.max_steps=400", "trainer.eval_every=20", "trainer.save_every=100"]
    assert config_to_dict(resolve_config("lab-long")) == config_to_dict(
        resolve_config("lab-collapse", probe))
    assert world_of_model_name(resolve_config("lab-long").model.name).name == "noise30-4op50"
