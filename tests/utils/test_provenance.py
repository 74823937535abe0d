"""sharpkit.utils.provenance: the kernel environment is recorded, and arithmetic_differences tells two
provenance records apart exactly where their arithmetic can differ."""
from __future__ import annotations

import copy

import torch

from sharpkit.utils.provenance import KERNEL_ENV, arithmetic_differences, kernel_env, provenance


def test_kernel_environment_is_recorded_when_set(monkeypatch):
    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert provenance()["hardware"]["kernel_env"] == {}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    assert kernel_env() == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
    assert provenance()["hardware"]["kernel_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def _record():
    return {"versions": {"torch": "2.14.1"},
            "hardware": {"device": "cpu", "cpu": "X", "cpu_count": 1, "cpu_capability": "AVX512",
                         "cpu_flags": ["avx2", "avx512f"], "kernel_env": {}}}


def test_identical_records_have_the_same_arithmetic():
    assert arithmetic_differences(_record(), _record()) == []
    assert arithmetic_differences(provenance(), provenance()) == []


def test_each_arithmetic_field_is_told_apart():
    changes = {"torch": ("versions", "torch", "2.13.0"), "threads": ("hardware", "cpu_count", 2),
               "flags": ("hardware", "cpu_flags", ["avx2"]), "isa": ("hardware", "cpu_capability", "AVX2"),
               "model": ("hardware", "cpu", "Y"), "device": ("hardware", "device", "cuda:0"),
               "env": ("hardware", "kernel_env", {"MKL_CBWR": "AVX2"})}
    for what, (part, key, value) in changes.items():
        other = copy.deepcopy(_record())
        other[part][key] = value
        notes = arithmetic_differences(_record(), other)
        assert len(notes) == 1, (what, notes)
        assert arithmetic_differences(other, _record()) != []


def test_older_records_are_compared_on_what_they_hold():
    old = _record()
    del old["hardware"]["cpu_flags"], old["hardware"]["kernel_env"]  # written before those fields existed
    assert arithmetic_differences(old, _record()) == []
    pinned = _record()
    pinned["hardware"]["kernel_env"] = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert arithmetic_differences(old, pinned) == ["kernel_env {} vs {'ONEDNN_MAX_CPU_ISA': 'AVX2'}"]


def test_a_training_here_matches_its_own_provenance():
    from sharpkit.experiments.reuse import same_arithmetic

    here = provenance()
    assert same_arithmetic(here, torch.device("cpu"), torch.get_num_threads())
    assert not same_arithmetic(here, torch.device("cpu"), torch.get_num_threads() + 1)


def test_cuda_only_variables_do_not_count_on_a_cpu():
    cpu = _record()
    cpu["hardware"]["kernel_env"] = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    old = _record()
    del old["hardware"]["kernel_env"]  # an older record: nothing recorded
    assert arithmetic_differences(old, cpu) == []
    gpu, gpu_set = copy.deepcopy(old), copy.deepcopy(cpu)
    gpu["hardware"]["device"] = gpu_set["hardware"]["device"] = "cuda:0"
    assert arithmetic_differences(gpu, gpu_set) == ["kernel_env {} vs {'CUBLAS_WORKSPACE_CONFIG': ':4096:8'}"]
