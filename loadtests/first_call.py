"""What the first cached call of a fresh process costs (the model loading), measured in
fresh interpreters: ``python loadtests/first_call.py [--idle 2]``.

For each case a new Python process imports cacheback, constructs ``CachedOpenAI`` against
the fake provider (answering at once), optionally idles (an application still starting),
then times its first call (a miss: upstream plus storing) and a second, different question.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from cacheback import CachedOpenAI
imported = time.perf_counter() - t0
t0 = time.perf_counter()
client = CachedOpenAI(api_key="sk-x", base_url=sys.argv[1], max_retries=0, cache_dir=sys.argv[2])
constructed = time.perf_counter() - t0
time.sleep(float(sys.argv[3]))
def ask(q):
    t = time.perf_counter()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": q}])
    return time.perf_counter() - t
first = ask("What is the boiling point of water?")
second = ask("Who painted the Mona Lisa?")
print(json.dumps({"import_s": imported, "construct_s": constructed, "first_call_s": first,
                  "second_call_s": second}))
client.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--idle", type=float, default=2.0, help="seconds between construction and first call")
    args = ap.parse_args()
    with fake_in_subprocess(0.0) as base:
        for idle in (0.0, args.idle):
            with tempfile.TemporaryDirectory() as cache_dir:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, base, cache_dir, str(idle)],
                    capture_output=True, text=True, check=True, timeout=300,
                )  # fmt: skip
                r = json.loads(out.stdout.splitlines()[-1])
                print(
                    f"idle {idle:.1f} s: import {r['import_s'] * 1000:.0f} ms, construct "
                    f"{r['construct_s'] * 1000:.0f} ms, first call {r['first_call_s'] * 1000:.0f} ms, "
                    f"second call {r['second_call_s'] * 1000:.0f} ms"
                )


if __name__ == "__main__":
    main()
