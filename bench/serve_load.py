#!/usr/bin/env python3
"""Load on `recur serve`: batch-1 generation requests from C concurrent
clients for D seconds; prints requests/s, tokens/s and latency p50/p99.

    recur serve --model run/model.safetensors --addr 127.0.0.1:8080 &
    python3 bench/serve_load.py --url http://127.0.0.1:8080 --clients 8 --seconds 20 --length 100

Standard library only.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--model")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    body = {"length": a.length, "temperature": 0.8}
    if a.model:
        body["model"] = a.model
    lat, errors, tokens = [], [], [0]
    lock = threading.Lock()
    stop = time.perf_counter() + a.seconds

    def client(i):
        conn = http.client.HTTPConnection(u.hostname, u.port)
        k = 0
        while time.perf_counter() < stop:
            req = json.dumps({**body, "seed": i * 1_000_000 + k}).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/v1/generate", req, {"content-type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            with lock:
                if r.status == 200:
                    lat.append(dt)
                    tokens[0] += len(json.loads(data)["tokens"])
                else:
                    errors.append(r.status)
            k += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"{a.clients} clients, {a.length} tokens per request, {wall:.1f} s")
    print(f"requests/s {len(lat) / wall:.1f}  tokens/s {tokens[0] / wall:.0f}  "
          f"p50 {q(0.5):.1f} ms  p99 {q(0.99):.1f} ms  mean {statistics.mean(lat) * 1000:.1f} ms  errors {len(errors)}")


if __name__ == "__main__":
    main()
