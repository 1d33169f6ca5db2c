"""The device script (benchmarks/bench_device.py) runs at toy size on the CPU and its protocol
estimate is the sum of its measured stages."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_device.py"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="its compiled chain loop needs a C++ compiler (g++; .ci/run installs it)")
def test_device_script_runs_at_toy_size_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--out", str(tmp_path), "--train-steps", "2",
                             "--draw", "4", "--cnn-images", "16", "--cnn-epochs", "1", "--at-once", "2", "--threads", "1",
                             "--generator-epochs", "3", "--synthetic-per-class", "10", "--runs", "2",
                             "--protocol-cnn-epochs", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "device.json").read_text())
    assert figures["training_fp32"]["ran"] and figures["training_bf16"]["ran"]  # bf16 autocast on the CPU too
    assert set(figures["cnn"]) == {"1_at_once_images_per_s", "2_at_once_images_per_s"}
    assert {f"chains_{how}_{mode}" for how in ("apart", "together") for mode in ("eager", "compiled")} <= set(figures)
    plan = figures["protocol"]
    # the estimate from the measured rates: 2 classes × 3 epochs × ⌈10 / 5⌉ steps, 2 × 10 images, and
    # 2 runs × 1 epoch × (20 real + 40 augmented) image passes at the 2-at-once rate
    step_ms = figures["training_bf16"]["ms_per_step"]
    assert math.isclose(plan["generators_s"], 2 * 3 * 2 * step_ms / 1000)
    assert math.isclose(plan["synthetic_s"], 2 * 10 * figures["sampling"]["seconds"] / 4)
    assert math.isclose(plan["cnn_s"], 2 * 1 * (20 + 40) / figures["cnn"]["2_at_once_images_per_s"])
    assert math.isclose(plan["total_s"], plan["generators_s"] + plan["synthetic_s"] + plan["cnn_s"])
    assert "thesis protocol" in (tmp_path / "device.txt").read_text()
