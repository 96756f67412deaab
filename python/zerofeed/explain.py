"""``zerofeed.explain``: would handing this to a framework copy, and why."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from . import _zerofeed
from .errors import LayoutError
from .views import View, view

TARGETS: tuple[str, ...] = tuple(_zerofeed._TARGETS)  # the core's list of consumers


def jax_x64_enabled() -> bool:
    """Whether JAX keeps 64-bit types (``jax_enable_x64``), without importing JAX.

    Example:
        >>> isinstance(jax_x64_enabled(), bool)
        True

    """
    jax = sys.modules.get("jax")
    if jax is not None:
        return bool(jax.config.read("jax_enable_x64"))
    return os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Explanation:
    """What converting a view to ``target`` does.

    ``zero_copy`` is True when the target reads the view's own bytes; otherwise
    ``reasons`` says why a copy is needed (each with how to avoid it) and ``copy_bytes``
    how many bytes the one copy writes. ``notes`` are caveats that do not force a copy.
    """

    target: str
    zero_copy: bool
    reasons: list[str]
    copy_bytes: int
    route: str
    shape: tuple[int, ...]
    dtype: str
    alignment: int
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        """Readable summary, one reason per line."""
        head = (
            f"{self.target}: {'zero-copy' if self.zero_copy else 'one copy'} "
            f"of {self.dtype}{list(self.shape)} (data aligned to {self.alignment} bytes, "
            f"via {self.route})"
        )
        lines = [head]
        if not self.zero_copy:
            lines.append(f"  copies {self.copy_bytes:,} bytes because:")
        lines += [f"  - {reason}" for reason in self.reasons]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def plan_for(v: View, target: str) -> Explanation:
    """Return the :class:`Explanation` for an existing view (no new view is made).

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> plan_for(zf.view(np.zeros(8)), "numpy").zero_copy
        True

    """
    if target not in TARGETS:
        raise LayoutError(f"target={target!r} is unknown: use one of {', '.join(TARGETS)}", "target")
    raw: dict[str, Any] = v._plan(target, jax_x64=jax_x64_enabled())
    return Explanation(
        target=target,
        zero_copy=raw["zero_copy"],
        reasons=list(raw["reasons"]),
        copy_bytes=raw["copy_bytes"],
        route=raw["route"],
        shape=tuple(v.shape),
        dtype=v.dtype,
        alignment=v.alignment,
        notes=list(raw["notes"]),
    )


def explain(obj: Any, target: str) -> Explanation:
    """Say whether converting ``obj`` to ``target`` is zero-copy, and if not, why.

    ``target`` is one of ``numpy``, ``torch``, ``tensorflow``, ``jax``, ``cupy``. Nothing
    is converted and no framework is imported.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> images = zf.empty((2, 8, 8, 3), "uint8")
        >>> e = zf.explain(zf.view(images)[:, 2:6, 2:6], "tensorflow")
        >>> e.zero_copy, e.copy_bytes
        (False, 96)
        >>> print(e.reasons[0].split(",")[0])
        the view is not C-contiguous (strides [192

    """
    return plan_for(view(obj), target)
