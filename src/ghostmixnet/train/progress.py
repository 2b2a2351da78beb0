"""The progress display: a bar on an interactive terminal, plain log lines otherwise (CI, redirected logs)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm


class Progress:
    """A tqdm bar on an interactive terminal; otherwise a plain line every ``every`` steps."""

    def __init__(self, total: int, desc: str, log: Callable[[str], None], every: int = 50,
                 enabled: bool = True, unit: str = "step") -> None:
        self.total, self.desc, self.log, self.every, self.enabled = total, desc, log, every, enabled
        self.unit = unit
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, step: int, **stats: float) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in stats.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif step % self.every == 0 or step == self.total:
            self.log(f"{self.desc} {self.unit} {step}/{self.total} {text}".rstrip())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
