"""Training the overlap detector (:class:`.overlap.OverlapDetector`) on simulated mixtures.

    python -m voiceprint.diarization.overlap_train --corpus ../shared/data/so762 \\
        --corpus ../shared/data/cv-zh --out src/voiceprint/assets/overlap.npz

Conversations of 2-4 speakers (25-35 s, none to a third of the speech overlapped, short
interjections included) come from each corpus's ``wav/train`` speakers only: never a dev
speaker, never a diarization dev recording. Half go through simulated far-field rooms.
Each frame's target is whether two or more reference voices are active there. The
network sees 4-s crops of log-mel normalised over the whole conversation (as inference
normalises over its block), and learns with Adam and a binary cross-entropy. The result
is written as numpy arrays with a JSON header (``info``): sizes, data, seed, and the
frame accuracy, precision and recall at 0.5 on a held-out share of the mixtures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint.diarization.overlap import OverlapDetector, build_net, normalise

SAMPLE_RATE = 16000
N_MELS, CHANNELS, DILATIONS = 64, 32, (2, 4, 8)
GRU = 48  # units a side of the bidirectional GRU on top of the convolutions (0: none)
CROP_FRAMES = 400
# Overlap shares of the training conversations: some with none, so that loud speech, level
# changes and turn changes alone are not taken for overlap.
OVERLAPS = (0.0, 0.1, 0.25, 0.35)


def mixtures(
    corpus: str | Path, count: int, seed: int, room: bool, overlap: float = 0.25
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (log-mel (T, 64) float16, target (T,) uint8) pairs of one corpus."""
    import torch

    from voiceprint.diarization.simulate import corpus_pool, simulate_set
    from voiceprint.features import Fbank

    fbank = Fbank(SAMPLE_RATE, n_mels=N_MELS, mean_norm=False)
    pool = corpus_pool(root=corpus, split="train")  # training speakers only
    out = []
    convs = simulate_set(
        pool,
        count,
        speakers=(2, 4),
        seconds=(25.0, 35.0),
        overlap=overlap,
        seed=seed,
        room=room,
        noise_db=-50.0 if room else -65.0,
    )
    for conv in convs:
        with torch.no_grad():
            feats = fbank(torch.from_numpy(conv.wave)[None])[0].numpy()
        voices = np.zeros(len(feats), dtype=np.int16)
        for s in conv.segments:
            voices[int(round(s.start / 0.01)) : int(round(s.end / 0.01))] += 1
        out.append((feats.astype(np.float16), (voices >= 2).astype(np.uint8)))
    return out


def train(
    data: list[tuple[np.ndarray, np.ndarray]],
    *,
    steps: int = 3000,
    batch: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    gru: int = GRU,
) -> tuple[object, dict[str, float]]:
    """Train the network on ``data``; returns it and its held-out frame figures."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    order = rng.permutation(len(data))
    held = [data[i] for i in order[: max(1, len(data) // 10)]]
    fit = [(normalise(f.astype(np.float32)), y) for f, y in (data[i] for i in order[len(held) :])]
    net = build_net(N_MELS, CHANNELS, DILATIONS, gru)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(steps):
        xs, ys = [], []
        for i in rng.integers(0, len(fit), size=batch):
            f, y = fit[i]
            a = int(rng.integers(0, max(1, len(f) - CROP_FRAMES)))
            x = f[a : a + CROP_FRAMES]
            t = y[a : a + CROP_FRAMES]
            pad = CROP_FRAMES - len(x)
            xs.append(np.pad(x, ((0, pad), (0, 0))))
            ys.append(np.pad(t, (0, pad)))
        logits = net(torch.from_numpy(np.stack(xs)))
        loss = loss_fn(logits, torch.from_numpy(np.stack(ys)).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    pred, truth = [], []
    with torch.no_grad():
        for f, y in held:
            x = torch.from_numpy(normalise(f.astype(np.float32)))[None]
            pred.append(torch.sigmoid(net(x))[0].numpy() > 0.5)
            truth.append(y.astype(bool))
    p, t = np.concatenate(pred), np.concatenate(truth)
    figures = {
        "held_out_files": len(held),
        "accuracy": float(np.mean(p == t)),
        "precision": float((p & t).sum() / max(p.sum(), 1)),
        "recall": float((p & t).sum() / max(t.sum(), 1)),
        "overlap_share": float(t.mean()),
    }
    return net, figures


def save(net: object, path: str | Path, info: dict) -> Path:
    """Write the weights (float32 arrays) and ``info`` (JSON) to ``path`` (.npz)."""
    state = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}  # type: ignore[attr-defined]
    sizes: Any = net  # the network's sizes go into the header the loader rebuilds it from
    head = {
        "sample_rate": SAMPLE_RATE,
        "n_mels": int(sizes.inp.in_channels),
        "channels": int(sizes.inp.out_channels),
        "dilations": [int(block.dilation[0]) for block in sizes.blocks],
        "gru": int(sizes.gru.hidden_size) if sizes.gru is not None else 0,
    }
    path = Path(path)
    np.savez_compressed(path, info=np.array(json.dumps({**head, **info})), **state)
    OverlapDetector(path)  # loads back
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True, help="AISHELL-layout root")
    parser.add_argument("--files", type=int, default=160, help="conversations per corpus")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--gru", type=int, default=GRU, help="GRU units a side (0: none)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = []
    each = max(1, args.files // (2 * len(OVERLAPS)))
    for i, corpus in enumerate(args.corpus):
        for j, share in enumerate(OVERLAPS):
            for room in (True, False):
                seed = args.seed + 100 * i + 10 * j + int(room)
                data += mixtures(corpus, each, seed, room, overlap=share)
    net, figures = train(data, steps=args.steps, seed=args.seed, gru=args.gru)
    info = {
        "trained_on": [f"{Path(c).name} wav/train" for c in args.corpus],
        "conversations": len(data),
        "steps": args.steps,
        "seed": args.seed,
        "held_out": figures,
    }
    print(json.dumps(info, indent=2))
    save(net, args.out, info)


if __name__ == "__main__":
    main()
