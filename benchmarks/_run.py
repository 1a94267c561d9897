"""Shared by the benchmark scripts: run a command from the project root, its output to a log file."""
import subprocess
import sys
from pathlib import Path
from typing import List

PROJECT = Path(__file__).resolve().parent.parent


def run(cmd: List[str], log: Path) -> None:
    """Run ``cmd`` in the project root with stdout and stderr in ``log``; on failure exit with its last lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
