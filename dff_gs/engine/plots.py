"""Held-out PSNR / mIoU against training time, drawn with matplotlib (the optional ``plots`` extra:
``pip install "dff_gs[plots]"``). Without matplotlib nothing is drawn and one line says why.

Every run with periodic evaluation (``train.eval_every`` > 0) gets ``psnr_vs_time.png`` and ``miou_vs_time.png``
in its folder; ``python -m dff_gs.bench`` draws both backbones on one plot.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from dff_gs.core.utils import atomic_write_path
from dff_gs.io.run_dir import MIOU_CURVE_NAME, PSNR_CURVE_NAME

CURVES = (("psnr", "test PSNR (dB)", PSNR_CURVE_NAME, "Held-out PSNR vs training time"),
          ("miou", "test mIoU", MIOU_CURVE_NAME, "Held-out mIoU vs training time"))
"""(metric, y label, file name, title) of each curve a run gets."""
NO_MATPLOTLIB = "matplotlib is not installed (pip install 'dff_gs[plots]')"


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(series: dict[str, list[dict]], key: str, ylabel: str, path: Path, title: str,
                reference: Optional[float] = None, reference_label: str = "",
                colours: Optional[dict[str, str]] = None) -> Optional[Path]:
    """``key`` of each named evaluation history (rows with ``seconds`` and ``key``) against training seconds, on
    one plot, with an optional dashed horizontal ``reference``. Returns ``path``, or None when nothing was drawn
    (no history holds ``key``, or matplotlib is missing: then one line on stderr says so)."""
    curves = {name: ([r["seconds"] for r in rows if isinstance(r.get(key), (int, float))],
                     [r[key] for r in rows if isinstance(r.get(key), (int, float))]) for name, rows in series.items()}
    curves = {name: c for name, c in curves.items() if c[0]}
    if not curves:
        return None
    plt = _pyplot()
    if plt is None:
        print(f"{path}: no {key} curve drawn: {NO_MATPLOTLIB}", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name, color=(colours or {}).get(name))
    if reference is not None:
        ax.axhline(reference, ls="--", color="grey", lw=1, label=reference_label or None)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def plot_run_curves(run_dir: Path, eval_history: list[dict], name: str) -> list[Path]:
    """A run's PSNR / mIoU against time (``CURVES``) when it evaluated periodically (two rows or more); one line
    instead when matplotlib is missing. Returns the files written."""
    if len(eval_history) < 2:
        return []
    if _pyplot() is None:
        print(f"{run_dir}: no PSNR / mIoU curves drawn: {NO_MATPLOTLIB}", file=sys.stderr)
        return []
    written = [plot_curves({name: eval_history}, key, ylabel, Path(run_dir) / file, title)
               for key, ylabel, file, title in CURVES]
    return [p for p in written if p is not None]
