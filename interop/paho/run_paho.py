#!/usr/bin/env python3
"""Runs the Eclipse Paho MQTT interoperability client tests against a broker, one test per process.

The suite itself (github.com/eclipse/paho.mqtt.testing, directory `interoperability/`) is not part
of this repository and is not on any package registry: see README.md beside this file for how to
get it. This script only drives it:

    python3 interop/paho/run_paho.py --suite /path/to/paho.mqtt.testing/interoperability \
        --host 127.0.0.1 --port 1883 [--version 3|5|both] [TEST ...]

Why a driver instead of `python3 client_test.py`: client_test.py hands its own options to
unittest.main(), which rejects them (only the default localhost:1883 works), and several tests
loop forever when a message never comes. Here each test runs in a child process that imports the
suite module, sets the globals its `__main__` block would set (host, port, topics), runs that one
test and is killed after --timeout seconds. The closing line counts the results.

Exit status: 0 when every selected test passed, 1 otherwise.
"""

import argparse
import os
import subprocess
import sys
import time

# What each suite module's `__main__` block sets before unittest.main().
CHILD = r"""
import sys, unittest
suite_dir, module_name, host, port, test = sys.argv[1:6]
sys.path.insert(0, suite_dir)
mod = __import__(module_name)
mod.host, mod.port = host, int(port)
mod.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
mod.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
mod.nosubscribe_topics = ("test/nosubscribe",)
mod.topic_prefix = "client_test5/"
suite = unittest.defaultTestLoader.loadTestsFromName("Test." + test, mod)
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
"""

MODULES = {"3": "client_test", "5": "client_test5"}


def test_names(suite_dir, module_name):
    """The suite's test method names, in source order (the order client_test*.py defines them)."""
    source = open(os.path.join(suite_dir, module_name + ".py"), encoding="utf-8").read()
    names = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("def test") and "(self" in stripped:
            names.append(stripped[4 : stripped.index("(")])
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True, help="the paho.mqtt.testing interoperability/ directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--version", choices=["3", "5", "both"], default="both", help="MQTT 3.1.1, 5.0 or both")
    ap.add_argument("--timeout", type=float, default=60, help="seconds one test may take")
    ap.add_argument("--log-dir", help="keep each test's output in this directory")
    ap.add_argument("tests", nargs="*", help="test names (e.g. test_basic); default all")
    args = ap.parse_args()

    suite_dir = os.path.abspath(args.suite)
    for module_name in MODULES.values():
        if not os.path.isfile(os.path.join(suite_dir, module_name + ".py")):
            sys.exit(f"run_paho: no {module_name}.py in {suite_dir}; see interop/paho/README.md")
    versions = ["3", "5"] if args.version == "both" else [args.version]
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)

    results = []  # (version, test, outcome, seconds, last lines)
    for version in versions:
        module_name = MODULES[version]
        names = test_names(suite_dir, module_name)
        if args.tests:
            names = [n for n in names if n in args.tests]
        for name in names:
            start = time.monotonic()
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, suite_dir, module_name, args.host, str(args.port), name],
                    cwd=suite_dir,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=args.timeout,
                    text=True,
                )
                output = proc.stdout
                outcome = "passed" if proc.returncode == 0 else "FAILED"
            except subprocess.TimeoutExpired as err:
                output = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
                outcome = "TIMEOUT"
            seconds = time.monotonic() - start
            label = f"MQTT {'3.1.1' if version == '3' else '5.0'} {name}"
            print(f"{outcome:8} {seconds:5.1f}s  {label}", flush=True)
            if outcome != "passed":
                for line in reason(output):
                    print(f"         | {line}")
            if args.log_dir:
                with open(os.path.join(args.log_dir, f"{module_name}.{name}.log"), "w", encoding="utf-8") as f:
                    f.write(output)
            results.append((version, name, outcome))

    passed = sum(1 for r in results if r[2] == "passed")
    failed = len(results) - passed
    print(f"paho: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def reason(output):
    """The lines of a test's output that say why it failed: assertion and exception lines."""
    lines = [l for l in output.splitlines() if l.strip()]
    keep = [
        l
        for l in lines
        if "Error" in l or "Exception" in l or "assert" in l or l.startswith("FAIL") or "Traceback" in l
    ]
    return (keep or lines)[-8:]


if __name__ == "__main__":
    sys.exit(main())
