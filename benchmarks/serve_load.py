"""Load on ``ghostmixnet serve`` over loopback: requests/s and p50/p99 latency at several concurrencies.

Starts the service (uvicorn, in this process) on a free port, then for each concurrency runs that many
client threads, each posting one real CIFAR-10 test image per request (PNG, multipart) for
``--seconds``; prints a line per concurrency and, beside it, the model's own batch throughput (one call
on 256 images), so the service's images/s can be read against what the model alone does. The last line
is the headline: ``requests_per_s_at_32: VALUE``.

    python benchmarks/serve_load.py MODEL --data-dir ../shared/data --seconds 10
"""

import argparse
import http.client
import io
import socket
import statistics
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.serve.app import create_app, load_served_model
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


def client(port: int, bodies: list[tuple[bytes, str]], until: float, latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = 0
    while time.perf_counter() < until:
        body, kind = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        conn.request("POST", "/predict", body=body, headers={"Content-Type": kind})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            errors.append(response.status)
        latencies.append(time.perf_counter() - start)
    conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a checkpoint, run folder or ONNX file")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--seconds", type=float, default=10.0, help="per concurrency [10]")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts [1,8,32]")
    args = p.parse_args()
    import uvicorn

    served = load_served_model(args.model, torch.device("cpu"))
    images = load_cifar10(args.data_dir, train=False).images[:256]
    served.logits(images)  # warm-up
    start = time.perf_counter()
    served.logits(images)
    print(f"model alone, one call on {len(images)} images (after one untimed): "
          f"{len(images) / (time.perf_counter() - start):.0f} images/s", flush=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served, Limits()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    bodies = [multipart(image) for image in images[:64]]
    last = 0.0
    for n in [int(c) for c in args.concurrency.split(",")]:
        latencies: list[float] = []
        errors: list[int] = []
        until = time.perf_counter() + args.seconds
        threads = [threading.Thread(target=client, args=(port, bodies, until, latencies, errors)) for _ in range(n)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        last = len(latencies) / elapsed
        ms = sorted(1000 * x for x in latencies)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(f"{n:>3} clients: {last:7.1f} requests/s, p50 {statistics.median(ms):7.1f} ms, p99 {p99:7.1f} ms, "
              f"{len(latencies)} requests, {len(errors)} errors", flush=True)
    server.should_exit = True
    print(f"requests_per_s_at_{n}: {last:.1f}")


if __name__ == "__main__":
    main()
