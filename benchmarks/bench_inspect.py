"""How long `inspect` takes on a 2 GiB dynamic VHDX, against `qemu-img info` on the same file.

Builds a 2 GiB GPT disk (ESP, XBOOTLDR, root, 1 GiB of data written into the root partition so
the VHDX has many allocated blocks), converts it with qemu-img, then times:
  - shieldwright inspect, in process (best of N),
  - shieldwright inspect --json as a fresh process (what a pipeline pays),
  - baseline: `qemu-img info --output=json` on the same VHDX (best of N), a process that only
    reads the container headers and knows nothing of partitions.
Prints the figures and the ratio. Run: .venv/bin/python benchmarks/bench_inspect.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.disk.layout import inspect_image  # noqa: E402

GiB = 1024**3
MiB = 1024**2


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build_vhdx(workdir: Path) -> Path:
    raw = workdir / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(2 * GiB)
    subprocess.run(
        [
            "sgdisk",
            "-n",
            "1:0:+100M",
            "-t",
            "1:ef00",
            "-n",
            "2:0:+200M",
            "-t",
            "2:ea00",
            "-n",
            "3:0:0",
            "-t",
            "3:8304",
            str(raw),
        ],
        check=True,
        capture_output=True,
    )
    # 1 GiB of incompressible data inside the root partition: the VHDX gets ~32 allocated blocks.
    root_start = (2048 + (300 * MiB) // 512) * 512
    chunk = os.urandom(16 * MiB)
    with open(raw, "r+b") as f:
        for i in range(64):
            f.seek(root_start + i * 16 * MiB)
            f.write(chunk)
    vhdx = workdir / "disk.vhdx"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", str(raw), str(vhdx)],
        check=True,
    )
    raw.unlink()
    return vhdx


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sw-bench-") as d:
        vhdx = build_vhdx(Path(d))
        size_on_disk = vhdx.stat().st_size
        layout = inspect_image(vhdx)
        assert layout.format == "vhdx" and len(layout.partitions) == 3, layout
        in_process = best_of(10, lambda: inspect_image(vhdx))
        cli = best_of(
            3,
            lambda: subprocess.run(
                [sys.executable, "-m", "app", "inspect", "--json", str(vhdx)],
                cwd=ROOT,
                check=False,
                capture_output=True,
            ),
        )
        baseline = best_of(
            10,
            lambda: subprocess.run(
                ["qemu-img", "info", "--output=json", str(vhdx)], check=True, capture_output=True
            ),
        )
        print(
            f"2 GiB dynamic VHDX ({size_on_disk / MiB:.0f} MiB on disk, {len(layout.partitions)} partitions)"
        )
        print(f"  shieldwright inspect (in process, best of 10):   {in_process * 1000:8.1f} ms")
        print(f"  shieldwright inspect --json (new process, best of 3): {cli * 1000:8.1f} ms")
        print(f"  baseline qemu-img info (new process, best of 10): {baseline * 1000:8.1f} ms")
        print(f"  ratio in-process inspect / qemu-img info: {in_process / baseline:.2f}")
        print(f"  ratio CLI inspect / qemu-img info:        {cli / baseline:.2f}")


if __name__ == "__main__":
    main()
