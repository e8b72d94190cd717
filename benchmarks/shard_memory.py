"""Training memory and epoch time: shards streamed by DataLoader workers against the
training list decoded into memory, as the corpus grows; and one real epoch side by side.

    python benchmarks/shard_memory.py [--scales 1 4 16] [--workers 2]
        [--cvzh ../shared/data/cv-zh --config configs/cpu_best.yaml [--set KEY=VALUE ...]]

Memory: a synthetic corpus (40 speakers x 10 utterances of 2-4 s, ~20 min, made by
``voiceprint.synth``) is listed 1, 4 and 16 times over under new utterance ids, so the
training list holds 1x, 4x and 16x the audio. For each size and each data path one epoch
of a small x-vector (batch 32, 2 s crops, noise and reverberation on) runs in a child
process; this script samples the child's process tree (trainer and workers) every 50 ms
and reports its peak proportional set size (PSS: shared pages counted once), with the
epoch's wall time. The shards are written by ``voiceprint.data.shards.write_shards``.

``--cvzh``: one epoch of ``--config`` (without its fine-tuning epochs) on cv-zh train
(the recipe's own model, 2 torch threads) from memory and from shards with ``--workers``
workers, side by side, wall and CPU seconds per epoch; with ``--cvzh-epochs 2`` the
second epoch is timed too.

Results go to ``benchmarks/results/shard_memory.md`` (and .json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SMALL_MODEL = [
    "model.params={frame_channels: [128, 128, 128, 128, 256]}",
    "model.embedding_dim=64",
    "train.batch_size=32",
    "train.crop_seconds=2.0",
    "augment.noise_prob=0.3",
    "augment.reverb_prob=0.2",
]


def tree_pss_kb(pid: int) -> int:
    """PSS (kB) of ``pid`` and its descendants, read from /proc; 0 for gone processes."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_child(args: list[str], every: float = 0.05) -> dict:
    """Run this script as a child with ``args``; its JSON result and peak tree PSS
    (sampled every ``every`` seconds)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss_kb(proc.pid))
        time.sleep(every)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_pss_mb"] = peak / 1024
    return result


def child(config_path: str, overrides: list[str], train_dir: str, epochs: int) -> None:
    """One training run in this process; prints seconds per epoch as JSON."""
    from voiceprint.config import load_config
    from voiceprint.experiment import Experiment, Prepared
    from voiceprint.training.trainer import train

    config = load_config(config_path or None, overrides)
    train(config, Prepared(Path(train_dir), Path(train_dir)), progress=False)
    from voiceprint.artifact import load_train_state

    history = load_train_state(Experiment(config).train_state)["history"]
    print(
        json.dumps(
            {
                "epochs": [
                    {k: h[k] for k in ("seconds", "cpu_seconds", "accuracy", "loss")}
                    for h in history[-epochs:]
                ]
            }
        )
    )


def scaled_list(utts: list, scale: int, folder: Path) -> Path:
    """A Kaldi folder listing every utterance ``scale`` times under new ids."""
    from voiceprint.data.corpus import Utterance, write_kaldi_dir

    copies = [Utterance(f"{u.utt}-c{k}", u.speaker, u.path) for k in range(scale) for u in utts]
    return write_kaldi_dir(folder, copies)


def memory_rows(args: argparse.Namespace, work: Path) -> list[dict]:
    from voiceprint.data.corpus import read_kaldi_dir, scan_split
    from voiceprint.data.shards import write_shards
    from voiceprint.synth import synthesize_corpus

    base = synthesize_corpus(
        work / "synthetic",
        train_speakers=40,
        test_speakers=2,
        utts_per_speaker=10,
        seconds=(2.0, 4.0),
        seed=11,
        progress=False,
    )
    utts = scan_split(base, "train")
    rows = []
    for scale in args.scales:
        listed = scaled_list(utts, scale, work / f"list_{scale}x")
        shards = work / f"shards_{scale}x"
        clock = time.perf_counter()
        index = write_shards(read_kaldi_dir(listed), shards, shard_size=200, progress=False)
        written = time.perf_counter() - clock
        for mode in args.modes:
            overrides = [
                f"exp_dir={work / 'exp'}",
                f"name=mem_{mode}_{scale}x",
                "train.epochs=1",
                "train.threads=1",
                *SMALL_MODEL,
            ]
            if mode == "shards":
                overrides += [f"data.shards={shards}", f"train.workers={args.workers}"]
            result = run_child(["", str(listed), "1", *overrides])
            epoch = result["epochs"][-1]
            row = {
                "scale": scale,
                "mode": mode,
                "utterances": index.utterances,
                "hours": index.seconds / 3600,
                "peak_pss_mb": result["peak_pss_mb"],
                "epoch_s": epoch["seconds"],
                "shard_write_s": written if mode == "shards" else None,
            }
            rows.append(row)
            print(
                f"{scale:>3}x {mode:<7} {row['utterances']:>6} utts {row['hours']:.2f} h: "
                f"peak PSS {row['peak_pss_mb']:.0f} MB, epoch {row['epoch_s']:.1f} s",
                flush=True,
            )
    return rows


def cvzh_rows(args: argparse.Namespace, work: Path) -> list[dict]:
    from voiceprint.config import load_config
    from voiceprint.data.shards import write_shards
    from voiceprint.experiment import Experiment

    base = [f"data.root={args.cvzh}", f"exp_dir={work / 'exp'}", "train.threads=2", *args.set]
    config = load_config(args.config, [*base, "name=cvzh_lists"])
    prepared = Experiment(config).prepare(progress=False)
    shards = work / "shards_cvzh"
    clock = time.perf_counter()
    index = write_shards(prepared.train, shards, progress=False)
    written = time.perf_counter() - clock
    rows = []
    for mode in ("memory", "shards"):
        overrides = [
            *base,
            f"name=cvzh_{mode}",
            f"train.epochs={args.cvzh_epochs}",
            "train.finetune_epochs=0",
        ]
        if mode == "shards":
            overrides += [f"data.shards={shards}", f"train.workers={args.workers}"]
        result = run_child(
            [args.config, str(prepared.train_dir), str(args.cvzh_epochs), *overrides]
        )
        for number, epoch in enumerate(result["epochs"], 1):
            rows.append(
                {
                    "mode": mode,
                    "epoch": number,
                    "utterances": index.utterances,
                    "epoch_s": epoch["seconds"],
                    "cpu_s": epoch["cpu_seconds"],
                    "accuracy": epoch["accuracy"],
                    "peak_pss_mb": result["peak_pss_mb"],
                    "shard_write_s": written,
                }
            )
            print(
                f"cv-zh {mode:<7} epoch {number}: {epoch['seconds']:.1f} s wall, "
                f"{epoch['cpu_seconds']:.1f} s CPU (trainer), peak PSS "
                f"{result['peak_pss_mb']:.0f} MB",
                flush=True,
            )
    return rows


def report(memory: list[dict], cvzh: list[dict], args: argparse.Namespace) -> list[str]:
    lines = [
        "# Training data: shards through DataLoader workers against the list in memory",
        "",
        f"`python benchmarks/shard_memory.py` ({args.workers} workers; 2-core machine).",
        "",
    ]
    if memory:
        lines += [
            "## Peak memory as the corpus grows",
            "",
            "One epoch of a small x-vector (batch 32, 2 s crops, noise + reverberation); peak "
            "PSS of the trainer and its workers.",
            "",
            "| corpus | utterances | hours | from memory: peak MB | epoch s "
            "| from shards: peak MB | epoch s |",
            "|---|---|---|---|---|---|---|",
        ]
        by = {(r["scale"], r["mode"]): r for r in memory}
        blank = {"peak_pss_mb": float("nan"), "epoch_s": float("nan")}
        for scale in args.scales:
            m, s = by.get((scale, "memory"), blank), by.get((scale, "shards"), blank)
            size = by.get((scale, "memory")) or by[(scale, "shards")]
            lines.append(
                f"| {scale}x | {size['utterances']} | {size['hours']:.2f} "
                f"| {m['peak_pss_mb']:.0f} | {m['epoch_s']:.1f} "
                f"| {s['peak_pss_mb']:.0f} | {s['epoch_s']:.1f} |"
            )
        first, last = min(args.scales), max(args.scales)
        for mode in args.modes:
            ratio = by[(last, mode)]["peak_pss_mb"] / by[(first, mode)]["peak_pss_mb"]
            lines.append("")
            lines.append(f"- {mode}: peak at {last}x / {first}x = **{ratio:.2f}**")
        lines.append("- target: shards' peak at 16x within 20% of 1x (ratio <= 1.20)")
        lines.append("")
    if cvzh:
        lines += [
            "## One cv-zh epoch side by side",
            "",
            f"`{args.config}` {' '.join(args.set)} on cv-zh train, 2 torch threads in the trainer.",
            "",
            "| data path | epoch | wall s | trainer CPU s | training accuracy | peak MB |",
            "|---|---|---|---|---|---|",
        ]
        for r in cvzh:
            lines.append(
                f"| {r['mode']} | {r['epoch']} | {r['epoch_s']:.1f} | {r['cpu_s']:.1f} "
                f"| {100 * r['accuracy']:.1f}% | {r['peak_pss_mb']:.0f} |"
            )
        for epoch in sorted({r["epoch"] for r in cvzh}):
            m = next(r for r in cvzh if r["mode"] == "memory" and r["epoch"] == epoch)
            s = next(r for r in cvzh if r["mode"] == "shards" and r["epoch"] == epoch)
            lines.append("")
            ratio = m["epoch_s"] / s["epoch_s"]
            lines.append(f"- epoch {epoch}: memory / shards wall time = **{ratio:.2f}x**")
        lines.append(
            f"- writing the shards took {cvzh[0]['shard_write_s']:.0f} s (once per corpus)"
        )
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        config, train_dir, epochs, *overrides = sys.argv[2:]
        child(config, overrides, train_dir, int(epochs))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["memory", "shards"])
    parser.add_argument("--work", default=str(ROOT / "exp/bench_shards"))
    parser.add_argument("--cvzh", help="cv-zh root: also time one epoch of --config on it")
    parser.add_argument("--config", default=str(ROOT / "configs/cpu_best.yaml"))
    parser.add_argument("--cvzh-epochs", type=int, default=1)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for --config"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/shard_memory.md"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    memory = [] if args.skip_memory else memory_rows(args, work)
    cvzh = cvzh_rows(args, work) if args.cvzh else []
    lines = report(memory, cvzh, args)
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", "utf-8")
    out.with_suffix(".json").write_text(json.dumps({"memory": memory, "cvzh": cvzh}, indent=1))


if __name__ == "__main__":
    main()
