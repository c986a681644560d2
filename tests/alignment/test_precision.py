"""model.dtype on a CPU: what a training stage loads and whether it autocasts (alignment.models)."""

import warnings

import pytest
import torch

from alignment import models

CPU = torch.device("cpu")


def test_bf16_on_a_cpu_trains_fp32_weights_under_autocast():
    assert models.training_precision("bfloat16", CPU) == models.Precision(torch.float32, True)
    assert models.training_precision("float32", CPU) == models.Precision(torch.float32, False)
    assert models.training_precision("auto", CPU) == models.Precision(torch.float32, False)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    real_read_text = models.Path.read_text

    def cpuinfo(flags):
        def read_text(self, *args, **kwargs):
            if str(self) == "/proc/cpuinfo":
                return f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n"
            return real_read_text(self, *args, **kwargs)
        return read_text

    monkeypatch.setattr(models.Path, "read_text", cpuinfo("avx2 avx512f avx512_bf16"))
    assert models.cpu_has_native_bf16()
    monkeypatch.setattr(models.Path, "read_text", cpuinfo("avx2 amx_tile amx_bf16"))
    assert models.cpu_has_native_bf16()
    monkeypatch.setattr(models.Path, "read_text", cpuinfo("avx2 fma"))
    assert not models.cpu_has_native_bf16()
    with pytest.warns(UserWarning, match="emulated"):
        assert models.pick_dtype("bfloat16", CPU) == torch.bfloat16


def test_bf16_if_native_follows_the_cpu(monkeypatch):
    """'bfloat16-if-native': bf16 (under autocast for training) where the CPU computes it, fp32 and no warning where it would be emulated."""
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.pick_dtype(models.BF16_WHERE_NATIVE, CPU) == torch.bfloat16
    assert models.training_precision(models.BF16_WHERE_NATIVE, CPU) == models.Precision(torch.float32, True)
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.pick_dtype(models.BF16_WHERE_NATIVE, CPU) == torch.float32
    assert models.training_precision(models.BF16_WHERE_NATIVE, CPU) == models.Precision(torch.float32, False)
