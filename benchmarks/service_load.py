"""Load test of the HTTP service: concurrent clients, latency, throughput, errors.

    python benchmarks/service_load.py [--model src/voiceprint/assets/default.onnx]
        [--clients 50] [--seconds 60] [--out benchmarks/results/service_load.md]

Starts ``voiceprint serve`` on 127.0.0.1 (a free port, a temporary store with one
enrolled speaker, no rate limit, no audit log) and drives it with httpx clients, each
posting 3-second clips in a loop: half /v1/embed, half /v1/verify. Three runs, each
stopping by itself: 1 client (the baseline), ``--clients`` clients with the service's
request batching (``--max-batch 16``), and the same clients with batching off
(``--max-batch 1``). For each it reports requests per second, p50/p99 latency and the
errors (any answer but 200); the ratios against the baseline show whether throughput
rises with concurrency. Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "src" / "voiceprint" / "assets" / "default.onnx"


def clip(seed: int, seconds: float = 3.0) -> bytes:
    """A synthetic voice speaking ``seconds``, as 16-bit WAV bytes."""
    from voiceprint.synth import make_voice, synthesize_utterance

    rng = np.random.default_rng(seed)
    wave = synthesize_utterance(make_voice(rng), seconds, rng)
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``voiceprint serve`` in a subprocess on 127.0.0.1, stopped on exit."""

    def __init__(
        self, model: Path, db: Path, max_batch: int, pythonpath: Path | None = None
    ) -> None:
        """``pythonpath``: run the voiceprint package found there (another checkout's
        ``src``) instead of the installed one."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "voiceprint", "serve", "--model", str(model)]
        command += ["--db", str(db), "--port", str(self.port), "--rate-limit", "0"]
        command += ["--audit-log", "off", "--max-batch", str(max_batch)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPRINT_API_KEY")}
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("serve did not answer /health within 120 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def drive(url: str, clients: int, seconds: float, clips: list[bytes]) -> dict:
    """``clients`` concurrent loops for ``seconds``; latencies (s) of the answered requests."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < stop:
            data = clips[(i + n) % len(clips)]
            files = {"file": ("clip.wav", data, "audio/wav")}
            started = time.perf_counter()
            try:
                if n % 2:
                    r = await http.post("/v1/verify", data={"name": "enrolled"}, files=files)
                else:
                    r = await http.post("/v1/embed", files=files)
                key = None if r.status_code == 200 else f"HTTP {r.status_code}"
            except httpx.HTTPError as err:
                key = type(err).__name__
            if key is None:
                latencies.append(time.perf_counter() - started)
            else:
                errors[key] = errors.get(key, 0) + 1
            n += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the main run")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/service_load.md")
    args = parser.parse_args()
    import httpx

    clips = [clip(seed) for seed in range(8)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, max_batch, clients, seconds in (
            ("1 client", 16, 1, args.baseline_seconds),
            (f"{args.clients} clients, batching", 16, args.clients, args.seconds),
            (f"{args.clients} clients, no batching", 1, args.clients, args.baseline_seconds),
        ):
            with Server(args.model, Path(tmp) / f"s{max_batch}.db", max_batch) as server:
                files = {"file": ("enroll.wav", clips[0], "audio/wav")}
                enrolled = httpx.post(
                    server.url + "/v1/enroll", data={"name": "enrolled"}, files=files, timeout=120
                )
                enrolled.raise_for_status()
                result = asyncio.run(drive(server.url, clients, seconds, clips))
            result.update(run=name, seconds=seconds, max_batch=max_batch)
            runs.append(result)
            print(
                f"{name}: {result['rps']:.1f} req/s, p50 {result['p50_ms']:.0f} ms, "
                f"p99 {result['p99_ms']:.0f} ms, errors {result['errors'] or 0}",
                flush=True,
            )
    base = runs[0]["rps"]
    lines = [
        "# Service load test",
        "",
        f"`python benchmarks/service_load.py` on {os.cpu_count()} cores: "
        f"`voiceprint serve --model {args.model.name}` on 127.0.0.1, clients posting 3 s "
        "clips (half /v1/embed, half /v1/verify against one enrolled speaker).",
        "",
        "| run | seconds | requests | req/s | x baseline | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r['run']} | {r['seconds']:g} | {r['requests']} | {r['rps']:.1f} | "
            f"{r['rps'] / base:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{sum(r['errors'].values()) if r['errors'] else 0} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-5:]))
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
