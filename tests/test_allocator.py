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
