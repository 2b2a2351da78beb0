"""``ghostmixnet serve --engine ray``: the service on Ray Serve (an optional extra), for traffic past one process
or one machine.

Each replica loads the model as ``ghostmixnet serve`` does (:func:`~ghostmixnet.serve.served.load_served_model`,
on its share of the cores) and answers with the same code (:func:`~ghostmixnet.serve.app.answer`); Ray routes
requests among the replicas, batches them in each (``serve.batch``, sized from the runtime's measured speed)
and scales out by adding nodes to its cluster. The routes are the plain service's: ``POST /predict``,
``GET /model``, ``GET /health``, ``GET /``; answers also say which ``replica`` gave them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ServeError
from .app import PAGE, answer, decode_request, model_description
from .choose import cpu_cores
from .served import describe, load_served_model
from .uploads import BadInput, Limits, read_limited

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Plan:
    """What each replica loads and how: everything :func:`load_served_model` takes, and the request limits."""

    model: Path
    runtime: str
    views: int | None
    data_dir: Path | None
    check_images: int
    cores: int
    """Cores per replica."""
    limits: Limits
    cache: Path | None = None


def application(plan: Plan, replicas: int) -> Any:
    """The Ray Serve application: ``replicas`` replicas of the model, each loaded as :class:`Plan` says."""
    from ray import serve  # optional: the 'ray' extra
    from starlette.responses import HTMLResponse, JSONResponse

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128,
                      health_check_period_s=2)
    class GhostMixNet:
        def __init__(self) -> None:
            torch.set_num_threads(plan.cores)
            self.served = load_served_model(plan.model, torch.device("cpu"), plan.runtime, plan.views, plan.data_dir,
                                            plan.check_images, cache=plan.cache, cores=plan.cores, log=lambda _: None)
            queue = self.served.queue
            self.classify.set_max_batch_size(queue.max_batch)
            self.classify.set_batch_wait_timeout_s(queue.window)
            size = self.served.image_size
            self.served.logits(np.zeros((1, size, size, 3), np.uint8))  # ready only once the model answers
            self.replica = f"{os.uname().nodename}:{os.getpid()}"

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
        async def classify(self, requests: list[np.ndarray]) -> list[np.ndarray]:
            batch = np.concatenate(requests)
            logits = (await asyncio.get_running_loop().run_in_executor(None, self.served.logits, batch)).numpy()
            ends = np.cumsum([len(r) for r in requests])
            return list(np.split(logits, ends[:-1]))

        async def __call__(self, request: Any) -> Any:
            path, method = request.url.path.rstrip("/") or "/", request.method
            try:
                if method == "POST" and path == "/predict":
                    started = time.perf_counter()
                    body = await read_limited(request, plan.limits.max_bytes)
                    decoded = decode_request(body, request.headers.get("content-type", ""), plan.limits,
                                             self.served.image_size)
                    logits = await self.classify(np.stack([image for image, _ in decoded]))
                    return JSONResponse({**answer(self.served, decoded, logits, plan.limits.top_k, started),
                                         "replica": self.replica})
            except BadInput as error:
                return JSONResponse({"error": str(error)}, status_code=error.status)
            if method == "GET" and path == "/model":
                return JSONResponse({**model_description(self.served), "engine": "ray", "replicas": replicas})
            if method == "GET" and path == "/health":
                return JSONResponse({"status": "ok", "runtime": self.served.info["runtime"], "replica": self.replica})
            if method == "GET" and path == "/":
                return HTMLResponse(PAGE.read_text())
            return JSONResponse({"error": f"no route {method} {path}: POST /predict, GET /model, /health or /"},
                                status_code=404)

    return GhostMixNet.bind()


def serve_on_ray(model: Path, host: str, port: int, limits: Limits, runtime: str, views: int | None,
                 data_dir: Path | None, check_images: int, replicas: int, log: Callable[[str], None] = print,
                 cache: Path | None = None) -> None:
    """Start a local Ray instance (or join the cluster that ``RAY_ADDRESS`` names), run ``replicas`` replicas of
    the model behind Ray Serve's HTTP proxy on ``host:port``, and keep them up until interrupted (Ctrl-C or
    SIGTERM), then shut Serve and Ray down."""
    try:
        import ray  # optional: the 'ray' extra
        from ray import serve
    except ImportError:
        raise ServeError("--engine ray needs Ray Serve: pip install 'ghostmixnet[ray]'") from None
    cores = max(1, cpu_cores() // replicas)
    # The files and measurements every replica needs are made once, here, before the replicas look for them.
    served = load_served_model(model, torch.device("cpu"), runtime, views, data_dir, check_images, cache=cache,
                               cores=cores, log=log)
    log(describe(served))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = os.environ.get("RAY_ADDRESS")
    # A local instance listens on loopback alone unless the service itself is asked to face the network.
    local = {} if cluster else {"num_cpus": cpu_cores(), "_node_ip_address": "127.0.0.1" if host in LOOPBACK else None}
    ray.init(address=cluster, include_dashboard=False, log_to_driver=False, logging_level="error", **local)
    # Ray's initialisation replaces the handlers of Ctrl-C and SIGTERM: either now stops the service, cleanly.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": host, "port": port})
        plan = Plan(Path(model), served.info["runtime"], served.views, data_dir, check_images, cores, limits, cache)
        serve.run(application(plan, replicas), name="ghostmixnet", route_prefix="/")
        log(f"serving {served.info['name']} on Ray Serve, {replicas} replicas of {cores} core(s): "
            f"http://{host}:{port}/")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping: Ray Serve and Ray shut down")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if os.environ.get("RAY_ADDRESS"):  # a cluster outlives this command: take the application off it
            serve.delete("ghostmixnet")
        ray.shutdown()  # a local instance: its processes stop with it


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
