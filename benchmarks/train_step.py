"""Training-step time: glibc's default malloc, voiceprint's allocator tuning, bfloat16,
the compiled encoder, and the step of an earlier commit, side by side.

    python benchmarks/train_step.py [--config configs/cpu_best.yaml] [--steps 8] [--threads 2]
        [--baseline-rev 650fd83] [override ...]

Variants of one step, each in its own child process of this script (the allocator
setting is process-wide), on the same random batch of the config's size (batch_size x
crop_seconds), with the config's front-end, augmentation, model and loss:

* ``default``: glibc's malloc as it comes, float32;
* ``tuned``: ``keep_freed_memory()``, float32;
* ``tuned-bf16``: ``keep_freed_memory()`` and ``train.precision=bf16`` (the encoder trunk
  autocast to bfloat16; needs a CPU with AVX512-BF16 or AMX to pay off);
* ``tuned-bf16-compiled``: the same with ``train.compile=true`` (the encoder through
  torch.compile; its compilation happens in the warm-up steps and is timed apart);
* ``baseline``: ``tuned-bf16`` run by the voiceprint package of ``--baseline-rev`` (a git
  worktree; the step as it was when the speed issue was filed), so the ratio to today's
  step is measured in the same run.

It prints the mean wall and CPU seconds per step (after 2 warm-up steps), the kernel
(system) CPU seconds, and the ratios. Extra ``key=value`` arguments override the config
(e.g. ``model.params.channels=512``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.worktree import baseline_checkout  # noqa: E402

# variant -> (allocator tuning, precision, compiled encoder)
VARIANTS = {
    "default": (False, "fp32", False),
    "tuned": (True, "fp32", False),
    "tuned-bf16": (True, "bf16", False),
    "tuned-bf16-compiled": (True, "bf16", True),
    "baseline": (True, "bf16", False),
}
BASELINE_REV = "650fd83"  # the tree the speed issue measured


def measure(
    config: str, overrides: list[str], steps: int, threads: int, variant: str
) -> dict[str, float | str]:
    """Run ``steps`` training steps in this process; mean seconds per step."""
    import torch

    import voiceprint
    from voiceprint.allocator import keep_freed_memory
    from voiceprint.config import load_config
    from voiceprint.training import trainer

    tuned, precision, compiled = VARIANTS[variant]
    if tuned and not keep_freed_memory():
        raise SystemExit("keep_freed_memory() is not available here (glibc Linux only)")
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    cfg = load_config(config, [*overrides, f"train.precision={precision}"])
    classes = 693
    graph = trainer.TrainingGraph(cfg, classes).train()
    if compiled and not trainer.compile_encoder(graph.model):
        raise SystemExit("train.compile needs a C++ compiler")
    optimizer = torch.optim.Adam(graph.parameters(), lr=1e-3)
    samples = int(cfg.train.crop_seconds * cfg.features.sample_rate)
    waves = 0.1 * torch.randn(cfg.train.batch_size, samples)
    labels = torch.randint(0, classes, (cfg.train.batch_size,))

    def step() -> None:
        loss, _ = graph(waves, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warm = time.perf_counter()
    for _ in range(2):
        step()
    warm_up = time.perf_counter() - warm
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": (time.perf_counter() - wall) / steps,
        "cpu_s": (time.process_time() - cpu) / steps,
        "system_s": (after.ru_stime - before.ru_stime) / steps,
        "warm_up_s": warm_up,
        "package": str(Path(voiceprint.__file__).parent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/cpu_best.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--baseline-rev",
        default=BASELINE_REV,
        help="also time the step of this commit (a git worktree); '' to skip",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated variants to run (default: all)",
    )
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    if args.child:
        result = measure(args.config, args.overrides, args.steps, args.threads, args.child)
        print(json.dumps(result))
        return
    rows = {}
    with baseline_checkout(args.baseline_rev) as baseline:
        for variant in args.variants.split(","):
            if variant not in VARIANTS:
                raise SystemExit(f"--variants: unknown {variant!r}; valid: {', '.join(VARIANTS)}")
            env, config = dict(os.environ), args.config
            if variant == "baseline":
                if baseline is None:
                    continue
                env["PYTHONPATH"] = str(baseline / "src")  # that commit's package
                if (baseline / args.config).is_file():
                    config = str(baseline / args.config)  # the recipe as that commit had it
            command = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
            command += ["--config", config, "--steps", str(args.steps)]
            command += ["--threads", str(args.threads), *args.overrides]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
            out = done.stdout
            rows[variant] = r = json.loads(out.strip().splitlines()[-1])
            name = variant
            if variant == "baseline":
                name = f"baseline ({args.baseline_rev})"
                if not r["package"].startswith(str(baseline)):
                    raise SystemExit(f"the baseline ran {r['package']}, not {baseline}")
            print(
                f"{name:20s} {r['wall_s']:.3f} s/step wall, {r['cpu_s']:.3f} s CPU "
                f"({r['system_s']:.3f} s in the kernel; warm-up {r['warm_up_s']:.1f} s)",
                flush=True,
            )
    setting = f"{args.config} {' '.join(args.overrides)}".strip()
    wall = {k: r["wall_s"] for k, r in rows.items()}
    ratios = [
        ("default", "tuned", ""),
        ("tuned", "tuned-bf16", ""),
        ("tuned-bf16", "tuned-bf16-compiled", ""),
        ("baseline", "tuned-bf16-compiled", f" (baseline: {args.baseline_rev})"),
    ]
    for slow, fast, note in ratios:
        if slow in wall and fast in wall:
            print(f"speed-up {slow} / {fast}: {wall[slow] / wall[fast]:.2f}x{note}")
    print(f"({setting}, {args.threads} threads)")


if __name__ == "__main__":
    main()
