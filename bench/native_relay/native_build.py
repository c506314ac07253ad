"""Compile fastrelay.c into ``_fastrelay`` for this interpreter (bench only: bench/ablation_build.py's ``native``).

.venv/bin/python bench/native_relay/native_build.py OUT_DIR
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    target = out / f"_fastrelay{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    command = ["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-I{include}", str(HERE / "fastrelay.c")]
    subprocess.run([*command, "-o", str(target)], check=True, timeout=120)
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
