"""Load on ``ghostmixnet serve`` over loopback: requests/s and p50/p99 latency per concurrency, per runtime.

For each runtime asked for, starts the service (uvicorn, in this process, on a free port) with the model on
that runtime and views, exactly as ``ghostmixnet serve MODEL --runtime R --views V --data-dir D`` would, then
for each concurrency runs that many client threads, each posting one real CIFAR-10 test image per request
(PNG, multipart) for ``--seconds``. Each runtime's own batch throughput (measured when it was chosen, the
figure the queue is tuned from) is printed beside. ``--soak S`` then holds 32 clients for S seconds on the
last runtime and reports its errors. The last line is the headline, for the last runtime at the last
concurrency: ``requests_per_s_at_32: VALUE``.

    python benchmarks/serve_load.py pretrained --data-dir ../shared/data --runtimes torch,auto --seconds 10
"""

import argparse
import http.client
import io
import json
import socket
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.serve.app import create_app
from ghostmixnet.serve.served import describe, load_served_model
from ghostmixnet.serve.uploads import Limits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(image: np.ndarray) -> tuple[bytes, str]:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client(port: int, bodies: list[tuple[bytes, str]], until: float, latencies: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = 0
    while time.perf_counter() < until:
        body, kind = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": kind})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))
        except (OSError, http.client.HTTPException) as e:
            errors.append(type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - start)
    conn.close()


def load(port: int, bodies: list[tuple[bytes, str]], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` client threads posting for ``seconds``: requests/s, p50 and p99 (ms), requests, errors."""
    latencies: list[float] = []
    errors: list[str] = []
    until = time.perf_counter() + seconds
    threads = [threading.Thread(target=client, args=(port, bodies, until, latencies, errors)) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = sorted(1000 * x for x in latencies) or [float("nan")]
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(ms), "p99": p99, "requests": len(latencies),
            "errors": len(errors)}


def start_server(app) -> tuple[object, int]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a checkpoint, run folder, weights or ONNX file (pretrained: the shipped)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--runtimes", default="auto", help="comma-separated runtimes to serve on in turn [auto]")
    p.add_argument("--views", type=int, default=1, help="test-time views per image: 1, 2 or 6 [1]")
    p.add_argument("--seconds", type=float, default=10.0, help="per concurrency [10]")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts [1,8,32]")
    p.add_argument("--soak", type=float, default=0.0, help="then 32 clients for this many seconds [0: none]")
    p.add_argument("--port", type=int, default=None,
                   help="load a service already running on this loopback port instead (e.g. ghostmixnet serve "
                        "--engine ray); --runtimes is then ignored")
    args = p.parse_args(argv)

    images = load_cifar10(args.data_dir, train=False).images[:64]
    bodies = [multipart(image) for image in images]
    last, n = 0.0, 0
    if args.port is not None:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/model", timeout=30) as response:
            info = json.load(response)
        name = f"{info.get('engine', 'uvicorn')}/{info['runtime']}"
        print(f"== the service on port {args.port}: {name}, {info['views']} view(s), "
              f"{info['speed']['images_per_s']:.0f} images/s in batches per replica", flush=True)
        for n in [int(c) for c in args.concurrency.split(",")]:
            r = load(args.port, bodies, n, args.seconds)
            last = r["rps"]
            print(f"{name:>16}, {n:>3} clients: {r['rps']:7.1f} requests/s, p50 {r['p50']:7.1f} ms, "
                  f"p99 {r['p99']:7.1f} ms, {r['requests']} requests, {r['errors']} errors", flush=True)
        print(f"requests_per_s_at_{n}: {last:.1f}")
        return
    for runtime in args.runtimes.split(","):
        served = load_served_model(args.model, torch.device("cpu"), runtime, args.views, args.data_dir)
        print(f"== {describe(served)}", flush=True)
        server, port = start_server(create_app(served, Limits()))
        for n in [int(c) for c in args.concurrency.split(",")]:
            r = load(port, bodies, n, args.seconds)
            last = r["rps"]
            print(f"{served.info['runtime']:>16}, {n:>3} clients: {r['rps']:7.1f} requests/s, p50 {r['p50']:7.1f} ms, "
                  f"p99 {r['p99']:7.1f} ms, {r['requests']} requests, {r['errors']} errors", flush=True)
        if args.soak and runtime == args.runtimes.split(",")[-1]:
            r = load(port, bodies, 32, args.soak)
            print(f"soak, 32 clients for {args.soak:.0f} s on {served.info['runtime']}: {r['rps']:.1f} requests/s, "
                  f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['requests']} requests, {r['errors']} errors",
                  flush=True)
        server.should_exit = True
        time.sleep(0.5)
    print(f"requests_per_s_at_{n}: {last:.1f}")


if __name__ == "__main__":
    main()
