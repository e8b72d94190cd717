"""The malloc tuning is applied once on glibc Linux and is a no-op elsewhere."""

import platform
import subprocess
import sys

import pytest

from voiceprint import allocator


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is a glibc call",
)
def test_keep_freed_memory_applies_on_glibc_and_is_idempotent():
    code = "from voiceprint.allocator import keep_freed_memory as k;print(k(), k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_keep_freed_memory_reports_false_off_linux(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


def test_only_training_tunes_the_allocator(tmp_path):
    """Commands that serve or use a model leave glibc's defaults alone."""
    code = (
        "import sys; from voiceprint import allocator; from voiceprint.cli import main\n"
        f"main(['speakers', '--db', {str(tmp_path / 's.db')!r}])\n"
        "print('tuned' if allocator._tuned else 'untouched')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("untouched")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is a glibc call",
)
def test_release_freed_memory_gives_freed_buffers_back():
    """Tuned, a freed 64 MiB buffer stays resident; released (DataLoader workers), it goes
    back to the kernel."""
    code = (
        "import numpy as np\n"
        "from voiceprint.allocator import keep_freed_memory, release_freed_memory\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS'): return int(line.split()[1]) // 1024\n"
        "def cycle():\n"
        "    a = np.ones(64 << 20, np.uint8); del a; return rss() - base\n"
        "base = rss(); keep_freed_memory(); tuned = cycle()\n"
        "release_freed_memory(); print(tuned, cycle())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tuned, released = map(int, out.stdout.split())
    assert tuned >= 60 and released <= 4
