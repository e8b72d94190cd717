"""Training-step time: glibc's default malloc, voiceprint's allocator tuning, and bfloat16.

    python benchmarks/train_step.py [--config configs/cpu_best.yaml] [--steps 8] [--threads 2]
        [override ...]

Three variants of one step, each in its own child process of this script (the allocator
setting is process-wide), on the same random batch of the config's size (batch_size x
crop_seconds), with the config's front-end, augmentation, model and loss:

* ``default``: glibc's malloc as it comes, float32;
* ``tuned``: ``keep_freed_memory()``, float32;
* ``tuned-bf16``: ``keep_freed_memory()`` and ``train.precision=bf16`` (the encoder trunk
  autocast to bfloat16; needs a CPU with AVX512-BF16 or AMX to pay off).

It prints the mean wall and CPU seconds per step (after 2 warm-up steps), the kernel
(system) CPU seconds, and the ratios default / tuned and tuned / tuned-bf16. Extra
``key=value`` arguments override the config (e.g. ``model.params.channels=512``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"default": (False, "fp32"), "tuned": (True, "fp32"), "tuned-bf16": (True, "bf16")}


def measure(
    config: str, overrides: list[str], steps: int, threads: int, variant: str
) -> dict[str, float]:
    """Run ``steps`` training steps in this process; mean seconds per step."""
    import torch

    from voiceprint.allocator import keep_freed_memory
    from voiceprint.config import load_config
    from voiceprint.training.trainer import TrainingGraph

    tuned, precision = VARIANTS[variant]
    if tuned and not keep_freed_memory():
        raise SystemExit("keep_freed_memory() is not available here (glibc Linux only)")
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    cfg = load_config(config, [*overrides, f"train.precision={precision}"])
    classes = 693
    graph = TrainingGraph(cfg, classes).train()
    optimizer = torch.optim.Adam(graph.parameters(), lr=1e-3)
    samples = int(cfg.train.crop_seconds * cfg.features.sample_rate)
    waves = 0.1 * torch.randn(cfg.train.batch_size, samples)
    labels = torch.randint(0, classes, (cfg.train.batch_size,))

    def step() -> None:
        loss, _ = graph(waves, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": (time.perf_counter() - wall) / steps,
        "cpu_s": (time.process_time() - cpu) / steps,
        "system_s": (after.ru_stime - before.ru_stime) / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/cpu_best.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    if args.child:
        result = measure(args.config, args.overrides, args.steps, args.threads, args.child)
        print(json.dumps(result))
        return
    rows = {}
    for variant in VARIANTS:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
        command += ["--config", args.config, "--steps", str(args.steps)]
        command += ["--threads", str(args.threads), *args.overrides]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
        r = rows[variant]
        print(
            f"{variant:10s} {r['wall_s']:.3f} s/step wall, {r['cpu_s']:.3f} s CPU "
            f"({r['system_s']:.3f} s in the kernel)"
        )
    setting = f"{args.config} {' '.join(args.overrides)}".strip()
    allocator = rows["default"]["wall_s"] / rows["tuned"]["wall_s"]
    bf16 = rows["tuned"]["wall_s"] / rows["tuned-bf16"]["wall_s"]
    print(f"speed-up default / tuned: {allocator:.2f}x ({setting}, {args.threads} threads)")
    print(f"speed-up tuned / tuned-bf16: {bf16:.2f}x")


if __name__ == "__main__":
    main()
