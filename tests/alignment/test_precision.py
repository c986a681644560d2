"""model.dtype on a CPU: what a training stage loads and whether it autocasts (alignment.models)."""

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
