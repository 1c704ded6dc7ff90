"""CLI output piped into a reader that stops early (`| head`, `| jq` exiting): no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_config_schema_into_a_closed_pipe_prints_no_traceback():
    p = subprocess.Popen([sys.executable, "-m", "detector", "config-schema"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert p.stdout.read(16)  # like `| head -c 16`: read a little, then close the pipe
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
