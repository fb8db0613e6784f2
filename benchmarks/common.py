"""Shared benchmark helpers: timing with warm-up, peak memory, a matmul roofline, models."""
from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch

from speechbrain_sslse import SSLEncoder, EnhancementModel
from speechbrain_sslse.param_counts import PUBLISHED

#: benchmark name -> (model_type, config overrides) of the published shapes (random weights:
#: the speed is the same as with trained ones)
MODELS = {
    "log1p": None,
    "wavlm_base_ws_log1p": next((t, o) for n, (t, o, _) in PUBLISHED.items() if n.startswith("WavLM Base")),
    "wavlm_large_ws_log1p": next((t, o) for n, (t, o, _) in PUBLISHED.items() if n.startswith("WavLM Large")),
}


def build(name: str, mode: str = "frozen") -> EnhancementModel:
    torch.manual_seed(0)
    spec = MODELS[name]
    if spec is None:
        return EnhancementModel(None, input="spectrum")
    model_type, overrides = spec
    return EnhancementModel(SSLEncoder(config={"model_type": model_type, **overrides}, mode=mode), input="cross")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], repeats: int, device: str, warmup: int = 1) -> dict:
    """Median and spread (min, max) of ``repeats`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": repeats}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak extra memory while the block runs: CUDA allocator peak on GPU, resident set size
    sampled every 2 ms on CPU (minus the size before the block)."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = _rss()
            self._stop = False
            self._max = self.base
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop:
            self._max = max(self._max, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop = True
            self._thread.join()
            self.peak = max(self._max, _rss()) - self.base
        return False


def matmul_peak(device: str, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large square matmul: the bound the model's throughput is compared with."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timeit(lambda: a @ b, repeats, device, warmup=2)
    return 2 * n**3 / t["median"] / 1e9


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    else:
        try:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return info


def write_json(path: str | None, result: dict) -> None:
    """Saves a benchmark's figures (when a path is given)."""
    if not path:
        return
    import json

    from speechbrain_sslse.output_plan import write_text_atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=1))
