"""Text for ``cnnkern info`` and :func:`cnnkern.show_config`."""

from __future__ import annotations

import os
import platform
import sys

from . import backends


def config_text() -> str:
    import numpy

    lines = [
        f"cnnkern {__import__('cnnkern').__version__}  python {sys.version.split()[0]}"
        f"  numpy {numpy.__version__}"
        f"  {platform.machine()}",
        f"CNNKERN_BACKEND={os.environ.get('CNNKERN_BACKEND', '')!r}  CNNKERN_SIMD="
        f"{os.environ.get('CNNKERN_SIMD', '')!r}  CNNKERN_NUM_THREADS="
        f"{os.environ.get('CNNKERN_NUM_THREADS', '')!r}  CNNKERN_PIN_THREADS="
        f"{os.environ.get('CNNKERN_PIN_THREADS', '')!r}  NUMBA_NUM_THREADS="
        f"{os.environ.get('NUMBA_NUM_THREADS', '')!r}",
        "deterministic: every kernel's result is bitwise the same at any thread count (docs/threads.md)"
        + (
            "; except the cpp convs' measured algorithm, which may differ per thread count "
            "(CNNKERN_AUTOTUNE=1 is set: docs/autotune.md)"
            if os.environ.get("CNNKERN_AUTOTUNE", "").strip().lower() in ("1", "on", "true", "yes")
            else ""
        ),
    ]
    for name in backends.NAMES:
        reason = backends.probe(name)
        if reason is None:
            details = backends.get(name).info()
            extra = "  ".join(f"{k}={v}" for k, v in details.items())
            lines.append(f"  {name:<10} available   {extra}".rstrip())
        else:
            lines.append(f"  {name:<10} unavailable: {reason}")
    if backends.probe("cpp") is None:
        from . import autotune

        tuned = autotune.info()
        lines.append(
            f"conv autotune (cpp): {tuned['autotune']}; cache {tuned['cache']}, {tuned['entries']} entries "
            "(clear: delete that file or its folder; CNNKERN_CACHE_DIR moves it; docs/autotune.md)"
        )
    try:
        lines.append(f"default backend: {backends.current().name}")
    except Exception as exc:
        lines.append(f"default backend: error: {exc}")
    return "\n".join(lines)
