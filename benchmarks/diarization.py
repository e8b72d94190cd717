"""Speaker diarization on real meetings (AMI dev excerpts) and on simulated conversations.

    python benchmarks/diarization.py [--sets ami,sim] [--lengths 30,120,600]
        [--overlaps 0,0.1] [--files 30=20,120=10,600=3] [--threads 2] [--sweep]

``ami``: the nine 30-s AMI excerpts of ``--ami`` (``../shared/data/ami-excerpts``), real
far-field meetings with overlapped speech and back-channels, scored against their RTTM.
A dev set for evaluation and tuning only: nothing is trained on it.

``sim``: conversations simulated (``voiceprint.diarization.simulate``) from the so762
dev speakers (``wav/test``, held out from the embedding model's training), one set per
length in ``--lengths`` (seconds) and overlap share in ``--overlaps``, 2-4 speakers,
``--files`` conversations per length. The last ``--enroll-clips`` clips of every dev
speaker are kept out of the conversations; every other dev speaker (30 of 60) is enrolled
from them in one store, so each conversation mixes enrolled voices (to be named) and
unknown ones (to be ``unknown-N``).

Printed and written to ``benchmarks/results/diarization.md`` (and .json): DER at collar
0.25 s (NIST: +-0.25 s around each reference boundary) and 0 s with overlapped speech
counted, missed speech, false alarm and confusion apart, JER, the share of files whose
speaker count is right, naming accuracy (simulated sets), the overlap a single-speaker
output cannot cover, and the real-time factor (seconds of processing per second of
audio, from the wave to named turns; simulation and scoring not counted; onnxruntime and
torch on ``--threads`` threads).

``--sweep`` also runs clustering settings over the same window embeddings (stop LLR for
AHC, and spectral clustering) and prints their DER and count accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOTES_MARK = "Notes ("  # where the hand-written notes below the generated table begin
sys.path.insert(0, str(ROOT / "src"))

from voiceprint import audio  # noqa: E402
from voiceprint.diarization import Diarizer  # noqa: E402
from voiceprint.diarization.evaluate import score_file, summarise  # noqa: E402
from voiceprint.diarization.overlap import OVERLAP_MODEL  # noqa: E402
from voiceprint.diarization.segments import Segment, read_rttm  # noqa: E402
from voiceprint.diarization.simulate import corpus_pool, simulate_set  # noqa: E402
from voiceprint.embedder import load_embedder  # noqa: E402
from voiceprint.plots import plot_timeline  # noqa: E402
from voiceprint.store import SpeakerDB  # noqa: E402


@dataclass
class Item:
    """One recording to diarize: its wave (16 kHz), reference turns and overlap share."""

    file_id: str
    wave: np.ndarray
    segments: list[Segment]

    @property
    def duration(self) -> float:
        return len(self.wave) / 16000


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def ami_items(root: Path) -> list[Item]:
    """The AMI excerpts: ``wav/<id>.flac`` with ``rttm/<id>.rttm``."""
    items = []
    for wav in sorted((root / "wav").glob("*.flac")):
        truth = read_rttm(root / "rttm" / f"{wav.stem}.rttm").get(wav.stem, [])
        items.append(Item(wav.stem, audio.load(wav, 16000), truth))
    return items


def run_set(
    items: list[Item],
    diarizer: Diarizer,
    enrolled: set[str],
    sweep: list[dict] | None,
    picture: Path | None,
    cache: Path | None = None,
) -> tuple[dict, list[dict]]:
    """Diarize and score one set; with ``sweep``, also score each clustering setting.
    ``picture``: the timeline of the file with the most reference turns (then speakers)."""
    files, audio_s, spent, shares = [], 0.0, 0.0, []
    found_all = []
    busiest = max(
        range(len(items)),
        key=lambda i: (len(items[i].segments), len({s.speaker for s in items[i].segments})),
    )
    for i, item in enumerate(items):
        clock = time.perf_counter()
        found = diarizer.embed(item.wave, file_id=item.file_id)
        result = diarizer.label(found)
        spent += time.perf_counter() - clock
        audio_s += item.duration
        found_all.append(found)
        if cache is not None:  # window embeddings, overlap and truth: try settings offline
            cache.mkdir(parents=True, exist_ok=True)
            extra = {} if found.overlap is None else {"overlap": found.overlap}
            np.savez(
                cache / f"{found.file_id}.npz",
                regions=found.regions,
                windows=found.windows,
                embeddings=found.embeddings,
                num_samples=found.num_samples,
                truth=json.dumps([[s.start, s.end, s.speaker] for s in item.segments]),
                **extra,
            )
        files.append(score_file(item.segments, result.segments, result.file_id, enrolled))
        f = files[-1]
        shares.append(f["overlap"] / max(f["speech"], 1e-9))
        d = f["der_0.25"]
        der = (d["missed detection"] + d["false alarm"] + d["confusion"]) / max(d["total"], 1e-9)
        print(
            f"{result.file_id}: {item.duration:6.1f} s, {f['ref_speakers']} speakers "
            f"-> {f['hyp_speakers']}, DER(0.25) {pct(der)}%, overlap {pct(shares[-1])}%",
            flush=True,
        )
        if picture is not None and i == busiest:
            plot_timeline(
                [(s.start, s.end, s.speaker) for s in result.segments],
                picture,
                duration=result.duration,
                reference=[(s.start, s.end, s.speaker) for s in item.segments],
                title=f"{item.file_id} ({f['ref_speakers']} speakers, "
                f"{item.duration / 60:.1f} min): output above, truth below",
            )
    summary = summarise(files)
    summary["rtf"] = spent / audio_s
    summary["audio_minutes"] = audio_s / 60
    summary["measured_overlap"] = float(np.mean(shares))
    summary["per_file"] = [
        {
            "uri": f["uri"],
            "ref_speakers": f["ref_speakers"],
            "hyp_speakers": f["hyp_speakers"],
            "der_0.25": f["der_0.25"],
        }
        for f in files
    ]
    rows = []
    for setting in sweep or []:
        trial = Diarizer(
            diarizer.embedder,
            diarizer.db,
            method=setting["method"],
            stop_llr=setting["stop_llr"],
            overlap_model=diarizer.overlap_model,
        )
        scored = [
            score_file(it.segments, trial.label(f).segments, f.file_id, enrolled)
            for it, f in zip(items, found_all, strict=True)
        ]
        rows.append({**setting, **summarise(scored)})
    return summary, rows


def table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| set | files | min | overlap % | DER(0.25) % | missed | false alarm | confusion "
        "| DER(0) % | JER % | count right | naming % (detected / all) | misnamed % "
        "| overlap miss % | RTF |",
        "|" + "---|" * 15,
    ]
    for name, r in results.items():
        a, z = r["der_0.25"], r["der_0"]
        right = round(r["count_right"] * r["files"])
        lines.append(
            f"| {name} | {r['files']} | {r['audio_minutes']:.1f} | {pct(r['measured_overlap'])} "
            f"| **{pct(a['der'])}** | {pct(a['missed'])} | {pct(a['false_alarm'])} "
            f"| {pct(a['confusion'])} | {pct(z['der'])} | {pct(r['jer'])} "
            f"| {right}/{r['files']} | {pct(r.get('naming_detected', float('nan')))} / "
            f"{pct(r.get('naming_all', float('nan')))} | {pct(r.get('misnamed', float('nan')))} "
            f"| {pct(r['overlap_miss'])} | {r['rtf']:.4f} |"
        )
    return lines


def parse_files(text: str) -> dict[int, int]:
    """``"30=20,120=10"`` -> {30: 20, 120: 10} (conversations per length in seconds)."""
    out = {}
    for part in text.split(","):
        length, _, count = part.partition("=")
        out[int(length)] = int(count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "src/voiceprint/assets/default.onnx"))
    parser.add_argument("--sets", default="ami,sim", help="comma list of: ami, sim")
    parser.add_argument("--ami", default=str(ROOT.parent / "shared/data/ami-excerpts"))
    parser.add_argument("--root", default=str(ROOT.parent / "shared/data/so762"))
    parser.add_argument("--lengths", default="30,120,600", help="simulated lengths (s)")
    parser.add_argument("--overlaps", default="0,0.1", help="simulated overlap shares")
    parser.add_argument(
        "--files", default="30=20,120=10,600=3", help="conversations per length: LEN=N,..."
    )
    parser.add_argument(
        "--room", action="store_true", help="simulate far-field rooms (RIR, distance, pink noise)"
    )
    parser.add_argument("--enroll-clips", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=762)
    parser.add_argument("--sweep", action="store_true", help="also score clustering settings")
    parser.add_argument("--cache", help="keep each file's window embeddings and truth here")
    parser.add_argument(
        "--overlap-model",
        default="packaged",
        help="overlap detector weights: a .npz, 'packaged' (assets/overlap.npz) or 'none'",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/diarization.md"))
    parser.add_argument("--picture", default=str(ROOT / "docs/img/diarization_timeline.png"))
    parser.add_argument(
        "--ami-picture",
        default=str(ROOT / "docs/img/diarization_ami.png"),
        help="timeline of the AMI excerpt with the most turns ('' for none)",
    )
    args = parser.parse_args()
    sets = set(args.sets.split(","))
    if args.overlap_model in ("packaged", "none"):
        args.overlap_model = OVERLAP_MODEL if args.overlap_model == "packaged" else None
    if not sets <= {"ami", "sim"}:
        parser.error(f"--sets: choose from ami, sim; got {args.sets}")

    import torch

    torch.set_num_threads(args.threads)
    embedder = load_embedder(args.model, threads=args.threads)
    sweep = None
    if args.sweep:
        sweep = [{"method": "ahc", "stop_llr": v} for v in (-2, -1, 0, 1, 2)]
        sweep.append({"method": "spectral", "stop_llr": 0.0})
    cache = Path(args.cache) if args.cache else None
    results, sweeps = {}, {}
    if "ami" in sets:
        name = "AMI dev excerpts"
        results[name], sweeps[name] = run_set(
            ami_items(Path(args.ami)),
            Diarizer(embedder, overlap_model=args.overlap_model),
            set(),
            sweep,
            Path(args.ami_picture) if args.ami_picture else None,
            cache,
        )

    enrolled: set[str] = set()
    if "sim" in sets:
        pool = corpus_pool(root=args.root, split="test")  # the dev speakers only
        speakers = sorted(pool)
        held = {s: pool[s][-args.enroll_clips :] for s in speakers}
        convo_pool = {s: pool[s][: -args.enroll_clips] for s in speakers}
        enrolled = set(speakers[::2])
        db = SpeakerDB(":memory:", embedder.model_id, embedder.scorer)
        for s in sorted(enrolled):
            db.enroll(s, embedder.embed_files(held[s], progress=False))
        diarizer = Diarizer(embedder, db, overlap_model=args.overlap_model)
        counts = parse_files(args.files)
        first = True
        for length in (int(v) for v in args.lengths.split(",")):
            for j, overlap in enumerate(float(v) for v in args.overlaps.split(",")):
                count = counts.get(length, 0)
                if count <= 0:
                    continue
                convs = simulate_set(
                    convo_pool,
                    count,
                    speakers=(2, 4),
                    seconds=(0.9 * length, 1.1 * length),
                    overlap=overlap,
                    seed=args.seed + 1000 * length + j,
                    room=args.room,
                    noise_db=-50.0 if args.room else -65.0,
                )
                tag = f"sim{length}s-ov{round(100 * overlap)}-"
                items = [Item(f"{tag}{i:03d}", c.wave, c.segments) for i, c in enumerate(convs)]
                room = ", room" if args.room else ""
                name = f"simulated {length} s, {round(100 * overlap)}% overlap{room}"
                picture = Path(args.picture) if first and args.picture else None
                results[name], sweeps[name] = run_set(
                    items, diarizer, enrolled, sweep, picture, cache
                )
                first = False
                del items

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diarization.py " + " ".join(
        sys.argv[1:]
    )
    lines = [
        "# Diarization: AMI dev excerpts and simulated so762 dev conversations",
        "",
        f"Model `{Path(args.model).name}` ({embedder.model_id}), {args.threads} threads. "
        "AMI: nine real 30-s far-field meeting excerpts (dev set: tuning and evaluation "
        "only). Simulated: conversations of 2-4 of the 60 so762 dev speakers (`wav/test`); "
        f"{len(enrolled)} of them enrolled from {args.enroll_clips} clips each that no "
        f"conversation uses. Seed {args.seed}. Collar 0.25 s = +-0.25 s around each "
        "reference boundary (NIST); overlapped speech is scored; JER without collar. "
        "Naming: the share of enrolled speakers' single-speaker speech labelled with their "
        "name (over the speech the output gives to someone / over all of it); misnamed: "
        "the share of unenrolled speakers' speech given an enrolled name. Overlap miss: "
        "the speech a single-speaker output cannot cover (n - 1 of n overlapping voices), "
        "as a share of all reference speech.",
        "",
        *table(results),
        "",
        "```bash",
        command,
        "```",
    ]
    for name, rows in sweeps.items():
        if not rows:
            continue
        lines += [
            "",
            f"Clustering settings on the same window embeddings ({name}):",
            "",
            "| method | stop LLR | DER(0.25) % | confusion % | count right % | count errors |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            errors = ", ".join(f"{e:+d}" for e in sorted(set(r["count_error"])) if e)
            lines.append(
                f"| {r['method']} | {r['stop_llr'] if r['method'] == 'ahc' else '-'} "
                f"| {pct(r['der_0.25']['der'])} | {pct(r['der_0.25']['confusion'])} "
                f"| {pct(r['count_right'])} | {errors or 'none'} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The dated notes written by hand below the table survive a rerun.
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    notes_at = previous.find(NOTES_MARK)
    notes = previous[notes_at:] if notes_at >= 0 else ""
    out.write_text(text + ("\n" + notes if notes else ""), encoding="utf-8")
    payload = {"command": command, "results": results, "sweeps": sweeps}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
