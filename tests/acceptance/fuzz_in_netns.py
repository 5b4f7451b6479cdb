"""Run inside a fresh network namespace (`unshare -n`): start `tillhook serve`, fuzz its
OpenAPI document with schemathesis, stop it. The namespace has nothing but loopback, so the
endpoints that fuzzing creates can send nothing beyond this machine.

usage: python fuzz_in_netns.py CONFIG ADMIN_TOKEN MAX_TIME_S"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path


def main() -> int:
    config, token, max_time = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "tillhook", "serve", "--config", config],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert daemon.stderr is not None
    url = None
    for line in daemon.stderr:
        entry = json.loads(line)
        if entry.get("event") == "serve_started":
            url = f"http://{entry['listen']}"
            break
    if url is None:
        print("the daemon did not start", file=sys.stderr)
        return 3
    failed_requests: list[str] = []

    def drain() -> None:
        for line in daemon.stderr:  # type: ignore[union-attr]
            if '"request_failed"' in line:
                failed_requests.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    bin_dir = Path(sys.executable).parent
    fuzz = subprocess.run(
        [
            str(bin_dir / "schemathesis"),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--max-time",
            max_time,
            # One worker: with two threads, hypothesis's ast.parse (describing a filter) was
            # seen to fail with "AST constructor recursion depth mismatch" (CPython 3.11's
            # interpreter-wide AST depth counter, gh-106905), failing the run with no finding.
            "--workers",
            "1",
            "--no-color",
            "--seed",
            "20261123",
        ],
        capture_output=True,
        text=True,
    )
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=60)
    reader.join(timeout=10)
    print(fuzz.stdout[-6000:])
    print(fuzz.stderr[-2000:], file=sys.stderr)
    for line in failed_requests:
        print(f"daemon logged: {line}", file=sys.stderr)
    if code != 0:
        print(f"the daemon exited with {code}", file=sys.stderr)
    return fuzz.returncode or code or (4 if failed_requests else 0)


if __name__ == "__main__":
    sys.exit(main())
