"""Speaker diarization on simulated conversations of the so762 dev speakers.

    python benchmarks/diarization.py [--model src/voiceprint/assets/default.onnx]
        [--root ../shared/data/so762] [--count 30] [--overlap-count 30] [--sweep]

Conversations are simulated (``voiceprint.diarization.simulate``) from the dev speakers
only (``wav/test``: never the training speakers): ``--count`` without overlap and
``--overlap-count`` with 10% overlapped speech, 2-4 speakers, 2-5 minutes, speaker levels
spread over 8 dB. The last ``--enroll-clips`` clips of every dev speaker are kept out of
the conversations; every other dev speaker (30 of 60) is enrolled from them in one store,
so each conversation mixes enrolled voices (to be named) and unknown ones (to be
``unknown-N``), and the open-set decision is that of a 30-speaker gallery.

Printed and written to ``benchmarks/results/diarization.md`` (and .json): DER at collar
0.25 s (NIST: +-0.25 s around each reference boundary) and 0 s with missed speech, false
alarm and confusion apart, JER, the share of files whose speaker count is right, naming
accuracy, the overlap a single-speaker output cannot cover, and the real-time factor
(seconds of processing per second of audio, from the wave in memory to named turns;
simulation and scoring not counted; onnxruntime and torch on ``--threads`` threads).

``--sweep`` also runs the clustering settings over the same window embeddings (stop LLR
for AHC, and spectral clustering) and prints their DER and count accuracy: the defaults
in ``voiceprint.diarization`` were chosen this way, on these dev-set conversations only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from voiceprint.diarization import Diarizer  # noqa: E402
from voiceprint.diarization.evaluate import score_file, summarise  # noqa: E402
from voiceprint.diarization.simulate import corpus_pool, simulate_set  # noqa: E402
from voiceprint.embedder import load_embedder  # noqa: E402
from voiceprint.plots import plot_timeline  # noqa: E402
from voiceprint.store import SpeakerDB  # noqa: E402


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def run_set(
    name: str,
    convs: list,
    diarizer: Diarizer,
    enrolled: set[str],
    sweep: list[dict] | None,
    picture: Path | None,
    cache: Path | None = None,
) -> tuple[dict, list[dict]]:
    """Diarize and score one set; with ``sweep``, also score each clustering setting."""
    files, audio_s, spent = [], 0.0, 0.0
    found_all = []
    for i, conv in enumerate(convs):
        clock = time.perf_counter()
        found = diarizer.embed(conv.wave, file_id=f"{name}{i:03d}")
        result = diarizer.label(found)
        spent += time.perf_counter() - clock
        audio_s += conv.duration
        found_all.append(found)
        if cache is not None:  # window embeddings and truth, to try settings offline
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(
                cache / f"{found.file_id}.npz",
                regions=found.regions,
                windows=found.windows,
                embeddings=found.embeddings,
                num_samples=found.num_samples,
                truth=json.dumps([[s.start, s.end, s.speaker] for s in conv.segments]),
            )
        files.append(score_file(conv.segments, result.segments, result.file_id, enrolled))
        f = files[-1]
        d = f["der_0.25"]
        der = (d["missed detection"] + d["false alarm"] + d["confusion"]) / d["total"]
        print(
            f"{result.file_id}: {conv.duration:6.1f} s, {f['ref_speakers']} speakers "
            f"-> {f['hyp_speakers']}, DER(0.25) {pct(der)}%, overlap {pct(conv.overlap_share)}%",
            flush=True,
        )
        if picture is not None and i == 0:
            plot_timeline(
                [(s.start, s.end, s.speaker) for s in result.segments],
                picture,
                duration=result.duration,
                reference=[(s.start, s.end, s.speaker) for s in conv.segments],
                title=f"simulated so762 dev conversation ({len(conv.speakers)} speakers, "
                f"{conv.duration / 60:.1f} min): output above, truth below",
            )
    summary = summarise(files)
    summary["rtf"] = spent / audio_s
    summary["audio_minutes"] = audio_s / 60
    summary["measured_overlap"] = float(np.mean([c.overlap_share for c in convs]))
    rows = []
    for setting in sweep or []:
        trial = Diarizer(
            diarizer.embedder, diarizer.db, method=setting["method"], stop_llr=setting["stop_llr"]
        )
        scored = [
            score_file(c.segments, trial.label(f).segments, f.file_id, enrolled)
            for c, f in zip(convs, found_all, strict=True)
        ]
        rows.append({**setting, **summarise(scored)})
    return summary, rows


def table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| set | files | min | overlap % | DER(0.25) % | missed | false alarm | confusion "
        "| DER(0) % | JER % | count right % | naming % (detected / all) | misnamed % "
        "| overlap miss % | RTF |",
        "|" + "---|" * 15,
    ]
    for name, r in results.items():
        a, z = r["der_0.25"], r["der_0"]
        lines.append(
            f"| {name} | {r['files']} | {r['audio_minutes']:.0f} | {pct(r['measured_overlap'])} "
            f"| **{pct(a['der'])}** | {pct(a['missed'])} | {pct(a['false_alarm'])} "
            f"| {pct(a['confusion'])} | {pct(z['der'])} | {pct(r['jer'])} "
            f"| {pct(r['count_right'])} | {pct(r.get('naming_detected', float('nan')))} / "
            f"{pct(r.get('naming_all', float('nan')))} | {pct(r.get('misnamed', float('nan')))} "
            f"| {pct(r['overlap_miss'])} | {r['rtf']:.4f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "src/voiceprint/assets/default.onnx"))
    parser.add_argument("--root", default=str(ROOT.parent / "shared/data/so762"))
    parser.add_argument("--count", type=int, default=30, help="conversations without overlap")
    parser.add_argument("--overlap-count", type=int, default=30, help="with 10%% overlap")
    parser.add_argument("--enroll-clips", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=762)
    parser.add_argument("--sweep", action="store_true", help="also score clustering settings")
    parser.add_argument("--cache", help="keep each file's window embeddings and truth here")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/diarization.md"))
    parser.add_argument("--picture", default=str(ROOT / "docs/img/diarization_timeline.png"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    embedder = load_embedder(args.model, threads=args.threads)
    pool = corpus_pool(root=args.root, split="test")  # the dev speakers only
    speakers = sorted(pool)
    held = {s: pool[s][-args.enroll_clips :] for s in speakers}
    convo_pool = {s: pool[s][: -args.enroll_clips] for s in speakers}
    enrolled = set(speakers[::2])
    db = SpeakerDB(":memory:", embedder.model_id, embedder.scorer)
    for s in sorted(enrolled):
        db.enroll(s, embedder.embed_files(held[s], progress=False))
    diarizer = Diarizer(embedder, db)
    sweep = None
    if args.sweep:
        sweep = [{"method": "ahc", "stop_llr": v} for v in (-4, -3, -2.5, -2, -1.5, -1, 0)]
        sweep.append({"method": "spectral", "stop_llr": 0.0})

    sets = {"no overlap": (args.count, 0.0), "10% overlap": (args.overlap_count, 0.1)}
    results, sweeps = {}, {}
    for i, (name, (count, overlap)) in enumerate(sets.items()):
        if count <= 0:
            continue
        convs = list(
            simulate_set(
                convo_pool,
                count,
                speakers=(2, 4),
                seconds=(120.0, 300.0),
                overlap=overlap,
                seed=args.seed + i,
            )
        )
        picture = Path(args.picture) if i == 0 and args.picture else None
        prefix = "conv" if overlap == 0 else "ovl"
        results[name], sweeps[name] = run_set(
            prefix, convs, diarizer, enrolled, sweep, picture, args.cache and Path(args.cache)
        )
        del convs

    lines = [
        "# Diarization on simulated so762 dev conversations",
        "",
        f"Model `{Path(args.model).name}` ({embedder.model_id}), {args.threads} threads; "
        f"conversations of 2-4 of the 60 dev speakers (`wav/test`), 2-5 min, levels spread "
        f"over 8 dB; {len(enrolled)} of the 60 enrolled from {args.enroll_clips} clips each "
        "that no conversation uses. Seed "
        f"{args.seed}. Collar 0.25 s = +-0.25 s around each reference boundary (NIST); "
        "overlapped speech is scored; JER without collar. Naming: the share of enrolled "
        "speakers' single-speaker speech labelled with their name (over the speech the output "
        "gives to someone / over all of it); misnamed: the share of unenrolled speakers' "
        "speech given an enrolled name. Overlap miss: the speech a single-speaker output "
        "cannot cover (n - 1 of n overlapping voices), as a share of all reference speech.",
        "",
        *table(results),
        "",
        "```bash",
        "nice -n 19 .venv/bin/python benchmarks/diarization.py" + (" --sweep" if sweep else ""),
        "```",
    ]
    for name, rows in sweeps.items():
        if not rows:
            continue
        lines += [
            "",
            f"Clustering settings on the same window embeddings ({name}); the defaults were "
            "chosen on these dev conversations:",
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
    out.write_text(text, encoding="utf-8")
    payload = {"results": results, "sweeps": sweeps}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
