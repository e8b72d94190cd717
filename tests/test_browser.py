"""End to end in headless Chromium: the page enrolls, verifies (mic and file), decides.

Debian's chromium (/usr/bin/chromium) is driven by Playwright through its executable
path, so no browser is downloaded; the microphone is Chromium's fake capture device
playing a wav file. The service runs in this process (uvicorn on 127.0.0.1, a free port).

The model: a tiny x-vector trained here for 100 steps on 8 synthetic voices (a few
seconds), enough to tell these voices apart on new utterances. Its threshold is then set
from scores measured in the fixture: halfway between the lowest score of crops of the
same speaker's second clip (what the fake microphone plays) and the score of the other
speaker's clip against the enrolled clip. This test checks the page and the service, not
the model's accuracy: the fixture fails when the measured scores do not separate.

Screenshots are kept in artifacts/browser/ (page.png is the final state); with
VOICEPRINT_DOCS_SCREENSHOT=1 the final one is also copied to docs/img/page.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from voiceprint.artifact import inference_of, write_backend, write_model
from voiceprint.audio import save
from voiceprint.config import ExperimentConfig
from voiceprint.embedder import Embedder, InferenceSpec, SpeakerEncoder
from voiceprint.features import build_frontend
from voiceprint.losses import AMSoftmax
from voiceprint.models import build_model
from voiceprint.runners import TorchRunner
from voiceprint.scoring import Backend, Decision
from voiceprint.synth import make_voice, synthesize_utterance

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
API_KEY = "browser-test-key"


def _require_browser() -> None:
    if os.environ.get("VOICEPRINT_SKIP_BROWSER") == "1":
        pytest.skip("VOICEPRINT_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
            "or set VOICEPRINT_SKIP_BROWSER=1 to skip the browser test",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs Playwright: pip install playwright", pytrace=False)


def train_tiny_xvector(out: Path, steps: int = 100, seed: int = 2024) -> tuple[Path, list]:
    """Train a tiny x-vector on 8 synthetic voices; returns (model file, voices).

    Front-end features of 4 x 3 s utterances per voice are computed once; each step
    takes 32 random 1 s crops (mean-normalised per crop) through the AM-softmax head.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(0)
    voices = [make_voice(rng) for _ in range(8)]
    utts = [synthesize_utterance(v, 3.0, rng) for v in voices for _ in range(4)]
    labels = np.repeat(np.arange(len(voices)), 4)
    cfg = ExperimentConfig(name="browser_tiny")
    cfg.features.kind = "mfcc"
    cfg.model.name = "xvector"
    cfg.model.pooling = "stats"
    cfg.model.embedding_dim = 32
    cfg.model.params = {"frame_channels": [32, 32, 32, 32, 64]}
    frontend = build_frontend(cfg.features)
    model = build_model(cfg.model, frontend.dim)
    head = AMSoftmax(32, len(voices), scale=30.0, margin=0.2)
    with torch.no_grad():
        feats = frontend(torch.from_numpy(np.stack(utts)))
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=5e-3)
    frames, batch = 100, 32
    for _ in range(steps):
        idx = rng.integers(0, len(labels), batch)
        start = rng.integers(0, feats.shape[1] - frames, batch)
        x = torch.stack([feats[i, s : s + frames] for i, s in zip(idx, start, strict=True)])
        loss, _ = head(model(x - x.mean(dim=1, keepdim=True)), torch.from_numpy(labels[idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = write_model(
        out,
        encoder=model.state_dict(),
        inference=inference_of(cfg, frontend.dim),
        backend=Backend(),
        provenance={"recipe": cfg.to_dict()},
    )
    return path, voices


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run best on one torch thread; two can stall on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict:
    _require_browser()
    folder = tmp_path_factory.mktemp("browser")
    checkpoint, voices = train_tiny_xvector(folder / "browser_tiny_checkpoint.pth")
    rng = np.random.default_rng(7)
    alice, bob = voices[0], voices[5]
    clips = {
        "alice1": synthesize_utterance(alice, 3.0, rng),
        "alice2": synthesize_utterance(alice, 4.0, rng),
        "bob1": synthesize_utterance(bob, 3.0, rng),
    }
    paths = {}
    for name, wave in clips.items():
        paths[name] = folder / f"{name}.wav"
        save(paths[name], wave)

    # Measured threshold: the fake microphone plays alice2 from some point for ~2.5 s.
    encoder = Embedder.from_checkpoint(checkpoint).runner.encoder.eval()
    embedder = Embedder(
        TorchRunner(SpeakerEncoder(encoder.frontend, encoder.model)),
        InferenceSpec(16000, "measure"),
    )
    enrolled = embedder.embed_batch([clips["alice1"]])[0]
    crops = [clips["alice2"][o : o + n] for o in (0, 8000, 16000) for n in (32000, 40000, 48000)]
    probes = embedder.embed_batch(crops + [clips["bob1"]])
    scores = probes @ enrolled / (np.linalg.norm(probes, axis=1) * np.linalg.norm(enrolled))
    same, other = float(scores[:-1].min()), float(scores[-1])
    assert same - other > 0.1, f"trained model does not separate the voices ({same} vs {other})"
    threshold = round((same + other) / 2, 3)
    write_backend(checkpoint, Backend(decision=Decision(threshold, "eer")), checkpoint)
    return {"checkpoint": checkpoint, "paths": paths, "threshold": threshold, "folder": folder}


@pytest.fixture(scope="module")
def server(setup: dict):
    import uvicorn

    from voiceprint.service import create_app
    from voiceprint.service.access import KeyRing

    keys = KeyRing.parse(f"page admin {API_KEY}", "browser test key")  # the page holds one key
    app = create_app(
        Embedder.from_checkpoint(setup["checkpoint"]), setup["folder"] / "speakers.db", keys
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the service did not start", pytrace=False)
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_enroll_then_verify_from_microphone_and_file(setup: dict, server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)  # generous: CI machines may be slow
    paths = setup["paths"]
    args = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={paths['alice2']}",
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 960, "height": 1000})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server + "/")
            expect(page.locator("#model")).to_contain_text("threshold")
            page.fill("#name", "alice")
            page.fill("#apikey", API_KEY)

            # Enroll alice from one file.
            page.set_input_files("#file", str(paths["alice1"]))
            page.click("#enroll")
            expect(page.locator("#decision")).to_have_text("ENROLLED")
            expect(page.locator("#speakers")).to_contain_text("alice (1)")

            # Another speaker's clip, claimed as alice: rejected.
            page.set_input_files("#file", str(paths["bob1"]))
            page.click("#verify")
            expect(page.locator("#decision")).to_have_text("REJECT")
            expect(page.locator("#decision")).to_have_attribute("data-state", "reject")
            page.screenshot(path=str(ARTIFACTS / "reject.png"), full_page=True)

            # Alice's second clip through the (fake) microphone: the level meter moves,
            # the page encodes a WAV, and the claim is accepted.
            page.click("#record")
            page.wait_for_function(
                "parseFloat(document.getElementById('level').style.width) > 5", timeout=10000
            )
            page.wait_for_timeout(2500)
            page.click("#record")
            expect(page.locator("#clip")).to_contain_text("recording")
            page.click("#identify")
            expect(page.locator("#decision")).to_have_text("ACCEPT")
            expect(page.locator("#detail")).to_contain_text("identified as alice")
            expect(page.locator("#candidates li")).to_have_count(1)
            page.click("#verify")
            expect(page.locator("#detail")).to_contain_text("alice? — score")
            expect(page.locator("#decision")).to_have_text("ACCEPT")
            detail = page.locator("#detail").inner_text()
            assert f"threshold {setup['threshold']:.3f}" in detail
            score = float(detail.split("score ")[1].split()[0])
            assert score >= setup["threshold"]
            page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000
    if os.environ.get("VOICEPRINT_DOCS_SCREENSHOT") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "page.png", ROOT / "docs" / "img" / "page.png")
