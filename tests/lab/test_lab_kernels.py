"""The lab world's kernel path is pinned by default (`mgrpo.kernel_path`): the rules, a real
build through the CLI with nothing set, the re-execution of a process that already loaded
torch, and (slow) the weight hash of the studied world built that way on this machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from mgrpo.kernel_path import KERNEL_ENV, PINNED_AVX2, is_lab_model_name, pinned_environ

X86 = platform.machine().lower() in ("x86_64", "amd64")
# the lab-long world (noise30-4op50) of docs/lab-study.md, "A slow regime": its weights'
# sha256 under the pinned path with torch 2.13.0 (CPU build)
STUDY_WORLD_SHA256 = "e63f43c0a519c30b3cd1e4168654bccb52ee40ce3adb2633f87771edb165de31"


def _bare_env(tmp_path) -> dict[str, str]:
    """This environment without any kernel switch, with its own lab cache."""
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV}
    env["MGRPO_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def _mgrpo(args, env, code=None):
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "mgrpo", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def test_pins_only_where_nothing_was_chosen():
    assert is_lab_model_name("lab") and is_lab_model_name("lab:noise30")
    assert not is_lab_model_name("tiny") and not is_lab_model_name("laboratory")
    assert pinned_environ({"ATEN_CPU_CAPABILITY": "avx512"}) is None  # the user chose
    assert pinned_environ({"MKL_CBWR": "COMPATIBLE"}) is None
    assert pinned_environ({"PATH": "/bin"}, "native") is None
    if X86:
        assert pinned_environ({"PATH": "/bin"}) == {"PATH": "/bin", **PINNED_AVX2}
    with pytest.raises(ValueError, match="avx2, native"):
        pinned_environ({}, "avx512")


@pytest.mark.skipif(not X86, reason="the kernel switches are x86-only")
def test_lab_build_pins_the_kernels_without_being_asked(tmp_path):
    done = _mgrpo(["lab", "build", "--quick", "--no-progress"], _bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "pinned to AVX2" in done.stderr
    (manifest,) = (tmp_path / "cache" / "lab").glob("*/manifest.json")
    versions = json.loads(manifest.read_text())["versions"]
    assert versions["kernel_env"] == PINNED_AVX2 and versions["cpu_capability"] == "AVX2"

    native = _mgrpo(["lab", "build", "--quick", "--force", "--no-progress", "--lab-kernels",
                     "native"], _bare_env(tmp_path))
    assert native.returncode == 0, native.stderr
    assert json.loads(manifest.read_text())["versions"]["kernel_env"] == {}


@pytest.mark.skipif(not X86, reason="the kernel switches are x86-only")
def test_a_process_that_loaded_torch_reexecutes_on_the_pinned_path(tmp_path):
    env = _bare_env(tmp_path)
    built = _mgrpo(["lab", "build", "--quick", "--no-progress"], env)  # an AVX2 build
    assert built.returncode == 0, built.stderr
    # torch is loaded before the command runs: the kernel path is only safe in a new process
    code = ("import sys, torch; from mgrpo.cli import main; "
            "sys.argv = ['mgrpo', 'lab', 'info', '--quick']; sys.exit(main())")
    done = _mgrpo(None, env, code)
    assert done.returncode == 0, done.stderr
    assert "pinned to AVX2" in done.stderr
    assert "built under another setup" not in done.stdout  # the re-executed info is on AVX2


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the kernel switches are x86-only")
def test_the_studied_world_rebuilds_bit_for_bit(tmp_path):
    """`mgrpo lab build --world noise30-4op50` with nothing set gives the study's weights
    (about 80 s on one thread)."""
    import torch

    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"the study's hash is of torch 2.13.0; this is {torch.__version__}")
    done = _mgrpo(["lab", "build", "--world", "noise30-4op50", "--no-progress"],
                  _bare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    (manifest,) = (tmp_path / "cache" / "lab").glob("*/manifest.json")
    assert json.loads(manifest.read_text())["files"]["model.safetensors"] == STUDY_WORLD_SHA256
