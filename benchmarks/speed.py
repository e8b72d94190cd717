"""Speed at the CPU's limit, in one run (issue 13): embedding RTF per backend and precision
beside SpeechBrain and Resemblyzer, the dev EER of each precision, CLI start-up, service
throughput, and the ratios against the issue's targets.

    python benchmarks/speed.py [--model src/voiceprint/assets/default.onnx]
        [--checkpoint exp/NAME] [--threads 2] [--root ../shared/data/so762]
        [--quick] [--skip-eer] [--skip-service] [--out benchmarks/results/speed.md]

Run from the repository root on an otherwise idle machine. Progress goes to stderr, the
tables to stdout and to ``--out`` (Markdown) with the same name ``.json`` beside it.

1. **Embedding RTF** (processing seconds / audio seconds; lower is faster): ``--clips``
   so762 dev clips cut to ``--clip-seconds``, embedded one at a time as a service does,
   ``--threads`` threads for torch and onnxruntime alike, decoding not counted. Rows: the
   model file on onnxruntime in float32; its int8 copy (``<name>.int8.onnx`` beside it, or
   one made here with :func:`voiceprint.quantize.quantize_model`, calibrated on so762
   *train* clips); with ``--checkpoint``, torch float32 and torch with the encoder trunk
   under bfloat16 autocast (as the trainer runs it); the deployed call
   (``Embedder.embed``: the VAD speech check + the precision ``load_embedder`` picks);
   SpeechBrain 1.1.2's ECAPA (C=256, random weights, Fbank + sentence mean norm, as
   ``references/speechbrain_ref.py`` builds it) and Resemblyzer (its own preprocessing
   included). Each system runs ``--rounds`` passes, interleaved with the others. *wall
   RTF* is ``time.perf_counter``: what a user waits, inflated when other jobs share the
   cores. *CPU RTF* is ``time.process_time`` (CPU seconds of every thread of this process
   / audio seconds): the cost in core-seconds, hardly changed by other jobs, but counting
   idle spinning of thread pools too; on an idle machine wall RTF is about CPU RTF /
   threads when both threads are busy.
2. **Dev EER** of each precision of the model through its deployed scorer:
   :func:`voiceprint.evaluation.evaluate` (what ``voiceprint evaluate`` runs) on all pairs
   of the so762 test split (the dev set: 60 speakers x 20 clips, 719,400 trials), float32
   with ``VOICEPRINT_PRECISION=fp32``, int8 on the copy; torch rows through the same
   ``evaluation.score_test_set``.
3. **CLI wall time**: ``voiceprint compare --model M a.wav b.wav`` on two 3-second dev
   clips, a subprocess, the median of ``--cli-runs`` after one unmeasured run, beside
   ``python -c "import torch"``; CPU seconds of the child too.
4. **Service requests/s** at concurrency 1, 4 and 16 on 5-second clips, with
   ``benchmarks/service_load.py``'s server and clients, request batching on
   (``--max-batch 16``) and off (``--max-batch 1``) side by side.
5. **Ratios** against the issue's targets, and the service figures recorded before this
   work (``benchmarks/results/service_load.md``: 14.3 req/s at 1 client, 18.9 at 50,
   3-second clips), quoted, not re-measured.

The CLI and the service run the model as deployed: ``load_embedder``'s automatic precision
on the model's path. When the int8 copy was made here (none beside the model), they run a
staging folder holding the model and that copy side by side, so the figures are those of
the model shipped with its int8 copy; the report says which file ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.worktree import baseline_checkout  # noqa: E402
from voiceprint import audio  # noqa: E402
from voiceprint.allocator import keep_freed_memory  # noqa: E402
from voiceprint.config import DataConfig  # noqa: E402
from voiceprint.data.corpus import Utterance, by_speaker, scan_split  # noqa: E402
from voiceprint.data.protocol import prepare_test  # noqa: E402
from voiceprint.scoring import verification  # noqa: E402

log = logging.getLogger("speed")

DEFAULT_MODEL = REPO / "src" / "voiceprint" / "assets" / "default.onnx"
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "so762"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "speed.md"
QUICK_OUT = REPO / "exp" / "bench_speed" / "speed_quick.md"
SAMPLE_RATE = 16000

# The issue's targets.
TARGET_RTF = 0.0025  # wall RTF on 2 threads
TARGET_VS_SB = 0.5  # shipped RTF / SpeechBrain RTF
TARGET_EER_LOSS = 0.1  # EER points lost by a faster precision
TARGET_CLI_SECONDS = 1.0
TARGET_SERVICE_GAIN = 2.0  # req/s at 16 clients against today's
# benchmarks/results/service_load.md as recorded before the speed work (3 s clips).
# The main branch before the speed work (VAD per 32 ms frame, DFT front-end, no int8).
BASELINE_REV = "650fd83"
OLD_SERVICE = {"1 client": 14.3, "50 clients, batching": 18.9, "50 clients, no batching": 19.6}


# ----------------------------------------------------------------------------- clips


def dev_clips(root: Path, n: int, seconds: float) -> list[tuple[Utterance, np.ndarray]]:
    """``n`` dev clips of at least ``seconds``, cut to exactly that, speakers in turn."""
    groups = by_speaker(scan_split(root, "test"))
    queues = [list(groups[s]) for s in sorted(groups)]
    need = int(seconds * SAMPLE_RATE)
    out: list[tuple[Utterance, np.ndarray]] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if not queue or len(out) >= n:
                continue
            utt = queue.pop(0)
            wave = audio.load(utt.path, SAMPLE_RATE)
            if len(wave) >= need:
                out.append((utt, wave[:need]))
    if len(out) < n:
        raise SystemExit(f"speed benchmark: only {len(out)} dev clips of {seconds:g} s in {root}")
    return out


def train_clips(root: Path, n: int) -> list[np.ndarray]:
    """``n`` random so762 *train* clips (int8 calibration), chosen as ``export`` does."""
    utts = scan_split(root, "train")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(utts), size=min(n, len(utts)), replace=False)
    return [audio.load(utts[i].path, SAMPLE_RATE) for i in sorted(chosen)]


# ----------------------------------------------------------------------------- embedding


@dataclass
class System:
    """One embedding path: ``embed(wave) -> (D,)``; ``reference``: the row it should agree
    with (its float32 counterpart)."""

    name: str
    kind: str  # "voiceprint" | "reference"
    embed: Callable[[np.ndarray], np.ndarray]
    note: str = ""
    reference: str | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    embeddings: np.ndarray | None = None


@dataclass
class RtfRow:
    system: str
    kind: str
    wall_rtf: float  # median over rounds
    wall_rtf_best: float
    cpu_rtf: float  # median over rounds; CPU seconds of all threads / audio seconds
    rounds: int
    note: str
    agreement: dict[str, Any] | None = None  # min/mean cosine to `reference`


class _Autocast(torch.nn.Module):
    """An encoder trunk run under bfloat16 autocast, float32 out (the trainer's bf16)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inner = model
        self.dtype = dtype
        self.embedding_dim = model.embedding_dim
        self.min_frames = getattr(model, "min_frames", 1)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device_type=feats.device.type, dtype=self.dtype):
            return self.inner(feats, lengths).float()


def torch_embedders(checkpoint: Path) -> dict[str, Any]:
    """``{"fp32": Embedder, "bf16": Embedder}`` for a checkpoint or experiment folder."""
    from voiceprint.embedder import load_embedder

    fp32 = load_embedder(checkpoint)
    bf16 = load_embedder(checkpoint)
    if fp32.runtime != "torch":
        raise SystemExit(f"speed benchmark: --checkpoint {checkpoint} is not a torch checkpoint")
    bf16.runner.encoder.model = _Autocast(bf16.runner.encoder.model)
    return {"fp32": fp32, "bf16": bf16}


def build_systems(
    args: argparse.Namespace, files: dict[str, Path], deployed: Path, torch_models: dict
) -> list[System]:
    """Every embedding path of the RTF table; references that do not import are logged."""
    from voiceprint.embedder import Embedder, load_embedder

    systems: list[System] = []
    for precision, path in files.items():
        emb = Embedder.from_onnx(path, threads=args.threads)
        systems.append(
            System(
                f"voiceprint onnxruntime {precision}",
                "voiceprint",
                lambda w, e=emb: e.embed_batch([w])[0],
                note=path.name,
                reference=None if precision == "fp32" else "voiceprint onnxruntime fp32",
            )
        )
    for precision, emb in torch_models.items():
        systems.append(
            System(
                f"voiceprint torch {precision}" + (" autocast" if precision == "bf16" else ""),
                "voiceprint",
                lambda w, e=emb: e.embed_batch([w])[0],
                note=Path(args.checkpoint).name,
                reference=None if precision == "fp32" else "voiceprint torch fp32",
            )
        )
    # a clip the check finds no speech in is embedded whole
    emb = load_embedder(deployed, threads=args.threads).with_policy(refuse=False)
    systems.append(
        System(
            "voiceprint deployed embed() (VAD check + auto precision)",
            "voiceprint",
            lambda w, e=emb: e.embed(w, SAMPLE_RATE),
            note=f"{Path(emb.runner.path or deployed).name}",
        )
    )
    try:
        from benchmarks.references.speechbrain_ref import SBRecipe, SpeechBrainECAPA

        torch.manual_seed(0)
        sb = SpeechBrainECAPA(SBRecipe(threads=args.threads)).eval()
        systems.append(
            System(
                "SpeechBrain 1.1.2 ECAPA C=256",
                "reference",
                sb.embed,
                note="random weights; Fbank 80 + sentence mean norm, as references/speechbrain_ref",
            )
        )
    except ImportError as err:
        log.warning("SpeechBrain row skipped: %s", err)
    try:
        from benchmarks.references.resemblyzer_ref import ResemblyzerEmbedder

        systems.append(
            System(
                "Resemblyzer 0.1.4",
                "reference",
                ResemblyzerEmbedder().embed,
                note="pretrained GE2E; its preprocessing (normalisation, WebRTC VAD) included",
            )
        )
    except ImportError as err:
        log.warning("Resemblyzer row skipped: %s", err)
    return systems


def time_systems(systems: list[System], waves: list[np.ndarray], rounds: int) -> list[RtfRow]:
    """``rounds`` timed passes over ``waves`` per system, interleaved; the agreement of
    each voiceprint row with its float32 counterpart on the last pass's embeddings."""
    audio_seconds = sum(len(w) for w in waves) / SAMPLE_RATE
    for s in systems:
        s.embed(waves[0])  # warm-up: lazy initialisation is not embedding time
    for r in range(rounds):
        for s in systems:
            wall, cpu = time.perf_counter(), time.process_time()
            out = [s.embed(w) for w in waves]
            s.walls.append(time.perf_counter() - wall)
            s.cpus.append(time.process_time() - cpu)
            if s.kind == "voiceprint":  # the agreement column compares these
                s.embeddings = np.stack([np.asarray(e, dtype=np.float64) for e in out])
            log.info(
                "round %d/%d %-58s wall RTF %.4f  CPU RTF %.4f",
                r + 1,
                rounds,
                s.name,
                s.walls[-1] / audio_seconds,
                s.cpus[-1] / audio_seconds,
            )
    by_name = {s.name: s for s in systems}
    rows = []
    for s in systems:
        agreement = None
        ref = by_name.get(s.reference or "")
        if ref is not None and s.embeddings is not None and ref.embeddings is not None:
            a, b = s.embeddings, ref.embeddings
            cos = verification(a, b)
            agreement = {"to": ref.name, "min_cosine": float(cos.min()), "mean": float(cos.mean())}
        rows.append(
            RtfRow(
                system=s.name,
                kind=s.kind,
                wall_rtf=statistics.median(s.walls) / audio_seconds,
                wall_rtf_best=min(s.walls) / audio_seconds,
                cpu_rtf=statistics.median(s.cpus) / audio_seconds,
                rounds=rounds,
                note=s.note,
                agreement=agreement,
            )
        )
    return rows


# ----------------------------------------------------------------------------- models


@contextlib.contextmanager
def precision_env(value: str | None) -> Iterator[None]:
    """``$VOICEPRINT_PRECISION`` set to ``value`` (None: unset) inside the block."""
    old = os.environ.get("VOICEPRINT_PRECISION")
    if value is None:
        os.environ.pop("VOICEPRINT_PRECISION", None)
    else:
        os.environ["VOICEPRINT_PRECISION"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VOICEPRINT_PRECISION", None)
        else:
            os.environ["VOICEPRINT_PRECISION"] = old


def model_files(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Path], Path, dict]:
    """The model's float32 file and int8 copy, and the path the CLI and service run
    (the model itself, or a staging folder with the model and a copy made here)."""
    from voiceprint.quantize import int8_path, int8_pays_off, quantize_model

    model = args.model.resolve()
    copy = int8_path(model)
    info: dict[str, Any] = {"model": str(model), "int8_pays_off_here": int8_pays_off()}
    if copy.is_file():
        info["int8"] = f"{copy.name} beside the model"
        return {"fp32": model, "int8": copy}, model, info
    stage = tmp / "stage"
    stage.mkdir()
    staged = stage / model.name
    staged.symlink_to(model)
    log.info(
        "no %s beside the model: quantizing on %d so762 train clips", copy.name, args.int8_clips
    )
    started = time.perf_counter()
    waves = train_clips(args.root, args.int8_clips)
    made = quantize_model(model, int8_path(staged), waves, sample_rate=SAMPLE_RATE)
    info["int8"] = (
        f"made here: {made.name} calibrated on {len(waves)} so762 train clips "
        f"in {time.perf_counter() - started:.0f} s (not shipped beside the model)"
    )
    log.info("%s", info["int8"])
    return {"fp32": model, "int8": made}, staged, info


# ----------------------------------------------------------------------------- EER


def eer_rows(
    args: argparse.Namespace, files: dict[str, Path], torch_models: dict, work: Path
) -> list[dict]:
    """Dev EER of each precision through the model's deployed scorer."""
    from voiceprint import metrics
    from voiceprint.data.trials import TrialSet
    from voiceprint.evaluation import evaluate, score_test_set

    folder = work / "data" / ("so762-dev-quick" if args.quick else "so762-dev")
    # all pairs of every dev clip; --quick: 6 speakers x 5 clips
    picked = (
        DataConfig(test_speakers=6, test_utts=5)
        if args.quick
        else DataConfig(test_speakers=0, test_utts=0)
    )
    prepare_test(scan_split(args.root, "test"), picked, folder)
    overrides = ["eval.bootstrap=20"] if args.quick else []
    rows = []
    for precision, path in files.items():
        log.info("dev EER: onnxruntime %s (%s)", precision, path.name)
        started = time.perf_counter()
        with precision_env("fp32" if precision == "fp32" else None):
            res = evaluate(
                path,
                data_dir=str(folder),
                trials="pairs",
                out_dir=work / "eval" / precision,
                overrides=overrides,
                progress=False,
            )
        rows.append(
            {
                "system": f"voiceprint onnxruntime {precision}",
                "file": path.name,
                "eer": res["eer"],
                "eer_ci95": res["eer_ci95"],
                "min_dcf": res["min_dcf"],
                "act_dcf": res.get("act_dcf"),
                "n_trials": res["n_target"] + res["n_nontarget"],
                "n_utterances": res["n_utterances"],
                "seconds": time.perf_counter() - started,
            }
        )
    if torch_models:
        test = TrialSet.read(folder, "pairs")
        labels = test.labels
    for precision, emb in torch_models.items():
        log.info("dev EER: torch %s", precision)
        started = time.perf_counter()
        # as evaluate: score every trial
        as_evaluated = emb.with_policy(trim=emb.config.eval.vad, refuse=False)
        scores = score_test_set(as_evaluated, emb.scorer, test, progress=False).scores
        res = metrics.summarize(scores[labels], scores[~labels], p_target=emb.config.eval.p_target)
        rows.append(
            {
                "system": f"voiceprint torch {precision}",
                "file": Path(args.checkpoint).name,
                "eer": res["eer"],
                "eer_ci95": None,
                "min_dcf": res["min_dcf"],
                "act_dcf": None,
                "n_trials": int(labels.size),
                "n_utterances": len(test.utts),
                "seconds": time.perf_counter() - started,
            }
        )
    return rows


# ----------------------------------------------------------------------------- CLI


def _timed_runs(command: list[str], runs: int, env: dict[str, str]) -> dict[str, Any]:
    """One unmeasured run, then ``runs`` timed ones: wall and child CPU seconds."""
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 1):  # compare: 0 accept, 1 reject
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        if i:
            walls.append(wall)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {
        "command": " ".join(command),
        "runs": runs,
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "cpu_median": statistics.median(cpus),
        "output": done.stdout.strip(),
    }


def cli_rows(args: argparse.Namespace, deployed: Path, clips: list, tmp: Path) -> list[dict]:
    """``voiceprint compare`` on two 3-second dev clips of two speakers; ``import torch``."""
    import soundfile as sf

    paths = []
    for (utt, wave), name in zip(clips, ("a.wav", "b.wav"), strict=False):
        path = tmp / name
        sf.write(path, wave[: 3 * SAMPLE_RATE], SAMPLE_RATE, subtype="PCM_16")
        paths.append(str(path))
        log.info("CLI clip %s: %s (%s)", name, utt.utt, utt.speaker)
    script = Path(sys.executable).with_name("voiceprint")
    exe = [str(script)] if script.is_file() else [sys.executable, "-m", "voiceprint"]
    env = {k: v for k, v in os.environ.items() if k != "VOICEPRINT_PRECISION"}
    rows = []
    for label, command in (
        (
            f"voiceprint compare --model {deployed.name} a.wav b.wav",
            [*exe, "compare", "--model", str(deployed), *paths],
        ),
        ('python -c "import torch"', [sys.executable, "-c", "import torch"]),
    ):
        log.info("CLI: %s", label)
        row = _timed_runs(command, args.cli_runs, env)
        row["label"] = label
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- service


def service_rows(args: argparse.Namespace, deployed: Path) -> list[dict]:
    """req/s at each concurrency, batching on and off, with service_load's machinery;
    with ``--baseline-rev``, also the service of that commit (a git worktree) serving the
    float32 model file (or ``--baseline-model``), side by side in the same run."""
    import httpx

    from benchmarks import service_load

    clips = [service_load.clip(seed, args.service_clip_seconds) for seed in range(8)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, baseline_checkout(args.baseline_rev) as base:
        runs = [("on", 16, deployed, None), ("off", 1, deployed, None)]
        if base is not None:
            label = f"baseline {args.baseline_rev}"
            if args.baseline_model:
                label += f" serving {args.baseline_model}"
            runs.append((label, 16, args.baseline_model or args.model, base / "src"))
        for batching, max_batch, model, pythonpath in runs:
            log.info("service %s: starting voiceprint serve --max-batch %d", batching, max_batch)
            db = Path(tmp) / f"s{len(rows)}.db"
            with service_load.Server(model, db, max_batch, pythonpath) as server:
                files = {"file": ("enroll.wav", clips[0], "audio/wav")}
                httpx.post(
                    server.url + "/v1/enroll", data={"name": "enrolled"}, files=files, timeout=120
                ).raise_for_status()
                for clients in args.concurrency:
                    result = asyncio.run(
                        service_load.drive(server.url, clients, args.service_seconds, clips)
                    )
                    result.update(batching=batching, max_batch=max_batch)
                    result["seconds"] = args.service_seconds
                    rows.append(result)
                    log.info(
                        "service batching %s, %d clients: %.1f req/s, p50 %.0f ms, errors %s",
                        batching,
                        clients,
                        result["rps"],
                        result["p50_ms"],
                        result["errors"] or 0,
                    )
    return rows


# ----------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    flags: set[str] = set()
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    import onnxruntime

    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "flags": sorted(flags & {"avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def ratios(rtf: list[RtfRow], eer: list[dict], cli: list[dict], service: list[dict]) -> list[str]:
    """The ratios as Markdown table lines: value, target and whether it is met."""
    lines = ["| ratio | value | target | met |", "| --- | --- | --- | --- |"]

    def add(label: str, value: float, most: float | None = None, least: float | None = None):
        if most is not None:
            ok, target = value <= most, f"<= {most:g}"
        elif least is not None:
            ok, target = value >= least, f">= {least:g}"
        else:
            ok, target = None, "–"
        verdict = "–" if ok is None else ("yes" if ok else "NO")
        lines.append(f"| {label} | {value:.3g} | {target} | {verdict} |")

    row = {r.system: r for r in rtf}
    fp32, int8 = row.get("voiceprint onnxruntime fp32"), row.get("voiceprint onnxruntime int8")
    sb = row.get("SpeechBrain 1.1.2 ECAPA C=256")
    for r in (x for x in (fp32, int8) if x is not None):
        short = r.system.removeprefix("voiceprint ")
        add(f"{short}: wall RTF", r.wall_rtf, most=TARGET_RTF)
        if sb is not None:
            add(f"{short} / SpeechBrain, wall RTF", r.wall_rtf / sb.wall_rtf, TARGET_VS_SB)
            add(f"{short} / SpeechBrain, CPU RTF", r.cpu_rtf / sb.cpu_rtf, TARGET_VS_SB)
    if fp32 is not None and int8 is not None:
        add("int8 speed-up over fp32, wall RTF", fp32.wall_rtf / int8.wall_rtf)
        add("int8 speed-up over fp32, CPU RTF", fp32.cpu_rtf / int8.cpu_rtf)
    tf, tb = row.get("voiceprint torch fp32"), row.get("voiceprint torch bf16 autocast")
    if tf is not None and tb is not None:
        add("torch bf16 speed-up over fp32, wall RTF", tf.wall_rtf / tb.wall_rtf)
        add("torch bf16 speed-up over fp32, CPU RTF", tf.cpu_rtf / tb.cpu_rtf)
    by = {e["system"]: e for e in eer}
    for backend, fast in (("onnxruntime", "int8"), ("torch", "bf16")):
        a, b = by.get(f"voiceprint {backend} fp32"), by.get(f"voiceprint {backend} {fast}")
        if a is not None and b is not None:
            delta = 100 * (b["eer"] - a["eer"])
            add(f"dev EER {fast} - fp32 ({backend}), points", delta, most=TARGET_EER_LOSS)
    if cli:
        add("voiceprint compare, median wall s", cli[0]["wall_median"], TARGET_CLI_SECONDS)
        if len(cli) > 1:
            add(
                "compare / import torch, median wall", cli[0]["wall_median"] / cli[1]["wall_median"]
            )
    rps = {(s["batching"], s["clients"]): s["rps"] for s in service}
    top = max((c for _, c in rps), default=None)
    on, off = rps.get(("on", top)), rps.get(("off", top))
    if on is not None and off is not None:
        add(f"service {top} clients: batching on / off", on / off, least=TARGET_SERVICE_GAIN)
    if on is not None:
        old = OLD_SERVICE["50 clients, batching"]
        add(
            f"service {top} clients / recorded 50 clients ({old} req/s)",
            on / old,
            least=TARGET_SERVICE_GAIN,
        )
    for (batching, clients), value in rps.items():
        if batching.startswith("baseline") and clients == top and on is not None:
            add(f"service {top} clients: this tree / {batching}", on / value, least=2.0)
    if rps.get(("on", 1)) is not None:
        old = OLD_SERVICE["1 client"]
        add(f"service 1 client / recorded 1 client ({old} req/s)", rps[("on", 1)] / old)
    return lines


def report(result: dict[str, Any]) -> str:
    args, m = result["settings"], result["machine"]
    lines = [
        "# Speed: embedding, precision, start-up, service (issue 13)",
        "",
        f"`{result['command']}` on {m['cpu']} ({m['cores']} cores, "
        f"{', '.join(m['flags']) or 'no VNNI/BF16'}), torch {m['torch']}, onnxruntime "
        f"{m['onnxruntime']}; load average {result['load_before']:.1f} before, "
        f"{result['load_after']:.1f} after; {result['measured_at']}."
        + (" **--quick: a smoke test, not a measurement.**" if args["quick"] else ""),
        "",
        f"Model {Path(result['models']['model']).name}; int8: {result['models']['int8']}. "
        f"The CLI and the service run {result['deployed']}.",
        "",
        f"## Embedding RTF: {args['clips']} so762 dev clips of {args['clip_seconds']:g} s, "
        f"one at a time, {args['threads']} thread(s)",
        "",
        "wall RTF = `perf_counter` seconds / audio seconds (median of the rounds, and the "
        "best round); CPU RTF = `process_time` seconds of all threads / audio seconds "
        "(core-seconds: robust to other jobs on the machine; about threads x wall RTF when "
        "idle). Decoding is not counted.",
        "",
        "| system | wall RTF | best | CPU RTF | x real time | agrees with fp32 (min cos) | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rtf"]:
        agree = f"{r['agreement']['min_cosine']:.4f}" if r["agreement"] else ""
        lines.append(
            f"| {r['system']} | {r['wall_rtf']:.4f} | {r['wall_rtf_best']:.4f} | "
            f"{r['cpu_rtf']:.4f} | {1 / r['wall_rtf']:.0f} | {agree} | {r['note']} |"
        )
    if result["eer"]:
        lines += [
            "",
            f"## Dev EER through the deployed scorer ({result['eer'][0]['n_trials']:,} trials, "
            f"{result['eer'][0]['n_utterances']} clips of so762 test)",
            "",
            "| system | file | EER % [95% CI] | minDCF(0.01) | actual DCF | seconds |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for e in result["eer"]:
            ci = (
                f" [{100 * e['eer_ci95'][0]:.2f}, {100 * e['eer_ci95'][1]:.2f}]"
                if e["eer_ci95"]
                else ""
            )
            act = "–" if e["act_dcf"] is None else f"{e['act_dcf']:.3f}"
            lines.append(
                f"| {e['system']} | {e['file']} | {100 * e['eer']:.2f}{ci} | "
                f"{e['min_dcf']:.3f} | {act} | {e['seconds']:.0f} |"
            )
    if result["cli"]:
        lines += [
            "",
            f"## CLI start-up: median of {args['cli_runs']} runs after one unmeasured run",
            "",
            "| command | wall s (median) | wall s (best) | CPU s (median) |",
            "| --- | --- | --- | --- |",
        ]
        for c in result["cli"]:
            lines.append(
                f"| `{c['label']}` | {c['wall_median']:.2f} | {c['wall_min']:.2f} | "
                f"{c['cpu_median']:.2f} |"
            )
    if result["service"]:
        lines += [
            "",
            f"## Service: {args['service_clip_seconds']:g} s clips, {args['service_seconds']:g} s "
            "per run (half /v1/embed, half /v1/verify; clients in this process)",
            "",
            "| batching | clients | requests | req/s | p50 ms | p99 ms | errors |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in result["service"]:
            errors = sum(s["errors"].values()) if s["errors"] else 0
            lines.append(
                f"| {s['batching']} (max-batch {s['max_batch']}) | {s['clients']} | "
                f"{s['requests']} | {s['rps']:.1f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | "
                f"{errors} |"
            )
        lines += [
            "",
            "Recorded before this work (benchmarks/results/service_load.md, 3 s clips, quoted): "
            + ", ".join(f"{k} {v} req/s" for k, v in OLD_SERVICE.items())
            + ".",
        ]
    lines += ["", "## Ratios and targets", "", *result["ratios"], ""]
    lines += ["Written by `python benchmarks/speed.py` (see benchmarks/README.md).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model file")
    parser.add_argument("--checkpoint", help="a .pth checkpoint or experiment folder: torch rows")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="so762 corpus root")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, help="dev clips for the RTF (20; quick 4)")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, help="timed passes per system (3; quick 1)")
    parser.add_argument(
        "--int8-clips", type=int, help="train clips to calibrate int8 (100; quick 8)"
    )
    parser.add_argument("--cli-runs", type=int, help="timed CLI runs (5; quick 2)")
    parser.add_argument("--service-seconds", type=float, help="per service run (15; quick 3)")
    parser.add_argument("--service-clip-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,4,16", help="service clients per run")
    parser.add_argument("--quick", action="store_true", help="a smoke test: few clips, short runs")
    parser.add_argument("--skip-eer", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument(
        "--baseline-rev",
        default=BASELINE_REV,
        help=f"git commit whose service runs side by side (default {BASELINE_REV}, "
        "before the speed work; '' to skip)",
    )
    parser.add_argument(
        "--baseline-model",
        type=Path,
        help="the float32 file the baseline's service serves (default: --model); for a "
        "model whose metadata that commit cannot read, a file of the same architecture "
        "it can (e.g. the previous shipped file, from git show)",
    )
    parser.add_argument("--work", type=Path, default=REPO / "exp" / "bench_speed")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"Markdown report (default {DEFAULT_OUT.relative_to(REPO)}; quick: under --work)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "clips": (20, 4),
        "rounds": (3, 1),
        "int8_clips": (100, 8),
        "cli_runs": (5, 2),
        "service_seconds": (15.0, 3.0),
    }
    for key, (full, short) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, short if quick else full)
    if args.out is None:
        args.out = QUICK_OUT if quick else DEFAULT_OUT
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.model.is_file():
        parser.error(f"--model {args.model} does not exist")
    if not (args.root / "wav" / "test").is_dir():
        parser.error(f"--root {args.root} has no wav/test (the so762 dev set)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "voiceprint.evaluation"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as accuracy.py: every torch system with the trainer's allocator
    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1) - 0.5:
        log.warning(
            "load average %.1f on %d cores: wall times will read slow (CPU RTF is robust)",
            load_before,
            os.cpu_count(),
        )
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files, deployed, models = model_files(args, tmp)
        with precision_env(None):
            from voiceprint.quantize import choose_precision

            deployed_file = choose_precision(deployed)
        log.info("decoding %d dev clips", args.clips)
        clips = dev_clips(args.root, args.clips, args.clip_seconds)
        waves = [w for _, w in clips]
        torch_models = torch_embedders(Path(args.checkpoint)) if args.checkpoint else {}
        with precision_env(None):
            systems = build_systems(args, files, deployed, torch_models)
        rtf = time_systems(systems, waves, args.rounds)
        del systems
        eer = [] if args.skip_eer else eer_rows(args, files, torch_models, args.work)
        cli = [] if args.skip_cli else cli_rows(args, deployed, clips, tmp)
        service = [] if args.skip_service else service_rows(args, deployed)
    result: dict[str, Any] = {
        "command": " ".join(["python benchmarks/speed.py", *(argv or sys.argv[1:])]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "models": models,
        "deployed": f"{deployed_file.name} (load_embedder's automatic precision)",
        "rtf": [asdict(r) for r in rtf],
        "eer": eer,
        "cli": cli,
        "service": service,
    }
    result["ratios"] = ratios(rtf, eer, cli, service)
    text = report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(text)
    log.info(
        "wrote %s and %s in %.0f s", args.out, args.out.with_suffix(".json"), result["seconds"]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
