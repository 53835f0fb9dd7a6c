"""The README and `--help` quote the same preset times (one constant, rankscope.cli.PRESET_TIMES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankscope.cli import PRESET_TIMES, main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_demo_help_and_readme_quote_the_same_times(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join(README.read_text(encoding="utf-8").split())
    for preset in ("smoke", "quick"):
        assert f"{preset} ({PRESET_TIMES[preset]})" in help_text
        assert PRESET_TIMES[preset] in readme, f"README.md must quote {preset}: {PRESET_TIMES[preset]}"


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`rankscope datasets show ... | head -2`: the closed pipe ends the command quietly."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(README.parent / "src")}
    process = subprocess.Popen([sys.executable, "-m", "rankscope.cli", "datasets", "show", "arith_chain", "-n", "3000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = process.stdout.readline()
    process.stdout.close()  # like head: stop reading
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert first.startswith(b"arith_chain:") and "Traceback" not in stderr and "BrokenPipe" not in stderr
