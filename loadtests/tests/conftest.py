"""Make ``llmload`` importable the way locust and ``run.py`` import it (from ``loadtests/``)."""

import sys
from pathlib import Path

LOADTESTS = Path(__file__).resolve().parents[1]
if str(LOADTESTS) not in sys.path:
    sys.path.insert(0, str(LOADTESTS))
