"""``ghostmixnet serve``: load the model and serve it, with uvicorn in this process or on Ray Serve's replicas."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..device import resolve_device
from ..model.weights import PRETRAINED
from .app import create_app
from .ray_engine import serve_on_ray
from .served import CHECK_IMAGES, describe, load_served_model
from .uploads import DEFAULT_LIMITS, Limits


def serve(model: Path = Path(PRETRAINED), host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = DEFAULT_LIMITS, runtime: str = "auto", views: int | None = 1, data_dir: Path | None = None,
          check_images: int = CHECK_IMAGES, engine: str = "uvicorn", replicas: int = 2,
          log: Callable[[str], None] = print) -> None:
    """Load ``model`` on ``runtime`` with ``views`` views and serve it until interrupted: with uvicorn in this
    process, or on Ray Serve (``engine="ray"``) with ``replicas`` replicas."""
    if engine == "ray":
        return serve_on_ray(model, host, port, limits, runtime, views, data_dir, check_images, replicas, log)
    try:
        import uvicorn  # optional: the 'serve' extra
    except ImportError:
        raise RuntimeError("serving needs the optional extra: pip install 'ghostmixnet[serve]'") from None
    served = load_served_model(model, resolve_device(device), runtime, views, data_dir, check_images, log=log)
    log(describe(served))
    log(f"serving {served.info['name']} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(create_app(served, limits), host=host, port=port, log_level="warning")
