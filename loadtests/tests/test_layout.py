"""Only ``users`` and ``hooks`` may import locust: it patches the standard library with gevent on
import, which would break pytest's asyncio tests and ``run.py``."""

import subprocess
import sys

from llmload.profile import LOADTESTS

PURE = ["client", "lengths", "profile", "prompts", "report", "samples", "shapes", "slo", "sse", "timing"]


def test_pure_modules_and_run_py_do_not_import_locust_or_gevent() -> None:
    imports = "; ".join(f"import llmload.{name}" for name in PURE)
    code = (
        f"import sys; sys.path.insert(0, {str(LOADTESTS)!r}); {imports}; import run; "
        "bad = sorted(m for m in ('locust', 'gevent') if m in sys.modules); assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=LOADTESTS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
