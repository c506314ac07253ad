"""``make mutation``: mutation testing (mutmut) of the gateway's hot path with its fast tests.

    python scripts/mutation.py [--deadline SECONDS] [--out bench/results/mutation.json] [--max-children N]
                               [--mutants GLOB ...] [--resume [--unchecked]]

mutmut imports the code under test from ``mutants/src/<package>``; the gateway lives in
``service/inferstack``, so the run happens in a scratch copy laid out as mutmut expects
(``.cache/mutation``: ``src/inferstack``, ``tests/``, the root conftest). Only the hot-path
modules are mutated (``HOT_PATH``), and each mutant runs only the fast, in-process tests that
reach the function it changes (``TESTS``: fake engines in the test's own process, no real vLLM, no
subprocess gateways, whose code mutmut cannot switch). A run that reaches ``--deadline`` is stopped and
its partial result is written, labelled as such. Not part of ``make test``.

``--mutants GLOB`` (repeatable) runs only the mutants whose names match (mutmut's names, e.g.
``inferstack.scheduling.*``); ``--resume`` keeps the scratch copy and mutmut's results of earlier
runs, so a long run can be done in stages (mutmut runs a named mutant again, so ``--unchecked`` names
only those of the matching mutants that have no result yet). ``--refresh-tests`` (with ``--resume``)
copies the tests again, so survivors can be run again against tests written since the copy (mutmut
collects the new tests' coverage first); the code under test stays the copy's.
mutmut runs under ``nice -n 19``: the machine it runs on is usually shared.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".cache" / "mutation"

# What is mutated: the request's hot path (issue 13: relay, router, upstream client and cluster,
# scheduling, the API's validation and body limit). Globs relative to the scratch copy.
HOT_PATH = [
    "src/inferstack/api/request.py",
    "src/inferstack/api/openai.py",
    "src/inferstack/router/*.py",
    "src/inferstack/scheduling/*.py",
    "src/inferstack/scheduling/plugins/*.py",
    "src/inferstack/upstream/client.py",
    "src/inferstack/upstream/cluster.py",
    "src/inferstack/upstream/endpoint.py",
    "src/inferstack/upstream/hold.py",
    "src/inferstack/upstream/outlier.py",
    "src/inferstack/relay/*.py",
]
# The tests mutants run against: fast and in-process (paths relative to service/tests).
TESTS = [
    "relay",
    "router",
    "scheduling",
    "upstream",
    "kvcache/test_precise_prefix.py",
    "kvcache/test_gateway_precise.py",  # a whole gateway in the test's loop: the scorer's KV-event path
    "api",  # request.py's limits; the catalog's gateway in the test's loop (openai.py's alias resolution)
    "test_request_path_hardening.py",
    "test_relay_fake_engine.py",
    "test_routing_api.py",
    "test_errors_api.py",
    "test_must_nots.py",
]
# Left out of the selection above: a test that reads the repository's generated files (the scratch
# copy has none), and several fake engines loading adapters per test (slow; test_catalog_api.py
# reaches the same lines of openai.py). Options, not selection: mutmut keeps its results while the
# selection stays the same, so --refresh-tests can add test files to a selected folder.
LEFT_OUT = [
    "--deselect",
    "tests/api/test_catalog_api.py::test_the_generated_catalog_and_prices_load",
    "--ignore=tests/api/test_adapters_api.py",
]


def layout(mutate: list[str], tests: list[str]) -> None:
    """The scratch copy mutmut runs in, rebuilt from the working tree each time."""
    if WORK.exists():
        shutil.rmtree(WORK)
    (WORK / "src").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "service" / "inferstack", WORK / "src" / "inferstack", ignore=ignore)
    shutil.copytree(REPO / "service" / "tests", WORK / "tests", ignore=ignore)
    shutil.copy2(REPO / "conftest.py", WORK / "conftest.py")
    # Which code the mutants are of: a later run with --resume keeps this copy.
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "service"], capture_output=True, text=True).stdout
    copied = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    code = {"commit": head, "uncommitted_changes": bool(dirty), "copied": copied}
    (WORK / "layout.json").write_text(json.dumps(code))
    selection = ", ".join(json.dumps(f"tests/{t}") for t in tests)
    (WORK / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src/"]\n'
        f"only_mutate = {json.dumps(mutate)}\n"
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        f"pytest_add_cli_args = {json.dumps(['-p', 'no:cacheprovider', '-m', 'not vllm', '-q', *LEFT_OUT])}\n"
        "use_git_change_detection = false\n"
        "\n[tool.pytest.ini_options]\n"
        'addopts = "--import-mode=importlib"\n'
        'asyncio_mode = "auto"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
        'markers = ["vllm: needs a real vLLM engine"]\n'
    )


def refresh_tests() -> None:
    """The tests of the working tree into the kept scratch copy (the mutated code is left as it was).

    Only while the gateway's code is still the copy's: tests written for newer code (after a rebase)
    would fail against it, and mutmut would stop at its coverage run."""
    code = json.loads((WORK / "layout.json").read_text())
    changed = subprocess.run(
        ["git", "-C", str(REPO), "diff", "--quiet", code["commit"], "--", "service/inferstack"], check=False
    ).returncode
    if changed:
        sys.exit(f"service/inferstack differs from the copy's {code['commit']}: run without --resume")
    shutil.rmtree(WORK / "tests")
    shutil.rmtree(WORK / "mutants" / "tests", ignore_errors=True)  # mutmut's copy keeps files deleted since
    shutil.copytree(REPO / "service" / "tests", WORK / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    code["tests"] = {"commit": head, "copied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (WORK / "layout.json").write_text(json.dumps(code))


# mutmut 3.8.1's exit code -> status (``mutmut.stats.status_by_exit_code``; the pin keeps them in step).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious"}
STATUS |= {36: "timeout", 37: "caught by type check", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
STATUS |= {-11: "segfault", -9: "segfault", 2: "check was interrupted by user"}


def results() -> dict[str, str]:
    """mutant name -> status, from mutmut's per-file records (what ``mutmut results --all true`` prints,
    without its start-up cost, which is minutes on a loaded machine)."""
    statuses = {}
    for meta in sorted((WORK / "mutants").glob("src/**/*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            statuses[name] = "not checked" if code is None else STATUS.get(code, "suspicious")
    return statuses


@functools.cache
def mutated_functions(source: Path) -> dict[str, str]:
    """Each function of a file mutmut rewrote (the original and its mutants) -> its source."""
    text = source.read_text()
    lines = text.splitlines()  # sliced by line numbers: ast.get_source_segment scans the file per call
    return {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name
    }


def change(name: str) -> str:
    """The mutated line(s) of ``name``, as ``- before`` / ``+ after`` (what ``mutmut show`` prints)."""
    module, _, local = name.rpartition(".")
    while not (source := WORK / "mutants" / "src" / (module.replace(".", "/") + ".py")).exists():
        module, _, _ = module.rpartition(".")  # a name such as x.Class.method: drop to the module
    functions = mutated_functions(source)
    base = local.rsplit("__mutmut_", 1)[0]
    before = functions.get(base + "__mutmut_orig", "").splitlines()[1:]
    after = functions.get(local, "").splitlines()[1:]
    diff = difflib.unified_diff(before, after, lineterm="", n=0)
    return "\n".join(ln for ln in diff if ln[:1] in "+-" and not ln.startswith(("+++", "---")))


def run(deadline: float, max_children: int, mutants: list[str]) -> bool:
    """Run mutmut in WORK until done or ``deadline`` seconds; True if it finished."""
    exe = str(Path(sys.executable).parent / "mutmut")
    log = (WORK / "mutmut.log").open("ab")  # mutmut redraws a progress line: keep it out of the terminal
    print(f"mutmut runs in {WORK}; progress in {WORK / 'mutmut.log'}", flush=True)
    proc = subprocess.Popen(
        ["nice", "-n", "19", exe, "run", "--max-children", str(max_children), *mutants],
        cwd=WORK,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mutmut ignores SIGINT while it runs mutants
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return False
    finally:
        log.close()
    return proc.returncode == 0


def module_of(name: str) -> str:
    """``inferstack.relay.sse.xǁEventSplitterǁfeed__mutmut_3`` -> ``inferstack.relay.sse``."""
    parts = name.split("__mutmut_")[0].split(".")
    return ".".join(parts[: next(i for i, p in enumerate(parts) if p.startswith("x"))])


def report(complete: bool, seconds: float | None, argv: list[str]) -> dict[str, object]:
    """The run's result from mutmut's state in WORK."""
    statuses = results()
    counts = Counter(statuses.values())
    by_module: dict[str, Counter[str]] = {}
    for name, status in statuses.items():
        by_module.setdefault(module_of(name), Counter())[status] += 1
    checked = counts["killed"] + counts["survived"] + counts["timeout"]
    config = (WORK / "pyproject.toml").read_text()
    return {
        "command": "make mutation  (python scripts/mutation.py " + " ".join(argv) + ")",
        "tool": "mutmut " + importlib.metadata.version("mutmut"),
        "complete": complete and not counts["not checked"],
        "note": None
        if complete and not counts["not checked"]
        else "PARTIAL: stopped at the deadline or run on a subset; 'not checked' mutants were never run",
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "seconds": None if seconds is None else round(seconds),
        "code": json.loads(made.read_text()) if (made := WORK / "layout.json").exists() else None,
        "config": config.split("\n\n")[0],
        "counts": dict(sorted(counts.items())),
        "by_module": {m: dict(sorted(c.items())) for m, c in sorted(by_module.items())},
        # Killed (a timeout is a kill: the mutant hung a test) over the mutants that ran.
        "score": round((counts["killed"] + counts["timeout"]) / checked, 4) if checked else None,
        "survived": [{"mutant": n, "change": change(n)} for n, s in sorted(statuses.items()) if s == "survived"],
        "no_tests": sorted(n for n, s in statuses.items() if s == "no tests"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deadline", type=float, default=3600.0, help="seconds before the run is stopped")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "mutation.json")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", action="append", help="a glob of modules to mutate instead of the hot path")
    p.add_argument("--tests", action="append", help="a test path (under service/tests) instead of the default")
    p.add_argument("--mutants", action="append", default=[], help="run only the mutants matching this glob")
    p.add_argument("--resume", action="store_true", help="keep the scratch copy and earlier results")
    p.add_argument("--unchecked", action="store_true", help="with --resume: run only mutants not checked yet")
    p.add_argument("--refresh-tests", action="store_true", help="with --resume: copy the tests again")
    p.add_argument(
        "--report-only", metavar="COMPLETE", choices=["complete", "partial"], help="write the last run's result again"
    )
    args = p.parse_args()
    if args.report_only:
        result = report(args.report_only == "complete", None, sys.argv[1:])
    else:
        if not (args.resume and WORK.exists()):
            layout(args.only or HOT_PATH, args.tests or TESTS)
        elif args.refresh_tests:
            refresh_tests()
        mutants = args.mutants
        if args.resume and args.unchecked:
            globs = args.mutants or ["*"]
            mutants = [
                n for n, s in sorted(results().items()) if s == "not checked" and any(fnmatch(n, g) for g in globs)
            ]
            if not mutants:
                print("no unchecked mutants match", globs)
                return 0
        started = time.monotonic()
        complete = run(args.deadline, args.max_children, mutants)
        result = report(complete, time.monotonic() - started, sys.argv[1:])
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: result[k] for k in ("complete", "seconds", "counts", "score")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
