#!/usr/bin/env python3
"""A bounded HTTP load loop for the cluster demo (scripts/demo-cluster.sh): WORKERS threads send
`POST /` with a JSON body to URL (with a Host header) for SECONDS, or until the file STOP exists,
and print one JSON line: requests, failures (non-200 or connection errors), p50/p99 latency (ms)
and the model names that answered. Standard library only.

usage: loadgen.py URL HOST SECONDS WORKERS [STOP]
"""
import json
import os
import sys
import threading
import time
import urllib.request

url, host, seconds, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
stop_file = sys.argv[5] if len(sys.argv) > 5 else None
body = json.dumps({"features": [1, 0, 1]}).encode()
lock = threading.Lock()
latencies, failures, models, errors = [], 0, {}, {}
deadline = time.monotonic() + seconds


def worker():
    global failures
    while time.monotonic() < deadline and not (stop_file and os.path.exists(stop_file)):
        t = time.monotonic()
        ok, err = False, None
        try:
            req = urllib.request.Request(url, data=body, headers={"Host": host, "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                ok = r.status == 200 and "score" in json.loads(r.read())
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Host": host}), timeout=10) as r:
                m = json.loads(r.read()).get("model", "?")
        except Exception as e:  # noqa: BLE001 - every failure counts
            err = type(e).__name__ + ": " + str(e)[:120]
        dt = (time.monotonic() - t) * 1000
        with lock:
            latencies.append(dt)
            if ok and err is None:
                models[m] = models.get(m, 0) + 1
            else:
                failures += 1
                errors[err or "bad response"] = errors.get(err or "bad response", 0) + 1


threads = [threading.Thread(target=worker) for _ in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
latencies.sort()
pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None
print(json.dumps({"requests": len(latencies), "failures": failures, "p50_ms": pick(0.5),
                  "p99_ms": pick(0.99), "models": models, "errors": dict(list(errors.items())[:5])}))
