"""Seconds from `make run` to the first answered request, on an installed checkout.

    python benchmarks/first_request.py [--port 7860]

Starts `make run` in its own process group, asks the Models tab's endpoint for the default
model's card every 0.2 s until one answer completes, prints the time, and stops the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = p.parse_args()
    url = f"http://127.0.0.1:{args.port}/gradio_api/call/model_card"
    start = time.perf_counter()
    server = subprocess.Popen(["make", "run"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - start < args.timeout:
            try:
                event = httpx.post(url, json={"data": ["mnist-glow"]}, timeout=30).json()
                answer = httpx.get(f"{url}/{event['event_id']}", timeout=60).text
                if "event: complete" in answer:
                    print(f"first answered request after {time.perf_counter() - start:.1f} s")
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                time.sleep(0.2)
        raise SystemExit(f"no answer within {args.timeout:.0f} s")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
