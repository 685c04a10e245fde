"""Render a results document to markdown tables and PNG charts.

``python -m benchmarks.report docs/benchmarks/results.json`` re-renders without re-running.
The hand-written analysis lives in ``analysis.md`` beside the results and is included as is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CPU_BOUND_SHARE", "FIGURES", "losses", "markdown", "render"]

Run = dict[str, Any]

CPU_BOUND_SHARE = 0.8
"""A client that used more than this share of one core for its whole run was CPU-bound: its
timing figures (makespan, delay) measure how fast this machine runs the client, not how well
the client schedules, and they vary widely between runs."""

FIGURES: list[tuple[str, str, bool]] = [
    ("makespan_ratio", "makespan / ideal", True),
    ("status_requests_per_job", "status requests per job", True),
    ("mean_delay_s", "mean detection delay", True),
    ("p99_delay_s", "p99 detection delay", True),
    ("http_429", "429s", True),
    ("failed", "failed jobs", True),
    ("lost", "lost jobs", True),
    ("duplicates", "duplicate generations", True),
    ("cpu_s_per_1k_jobs", "CPU s per 1k jobs", True),
    ("peak_rss_mb", "peak RSS", True),
]
"""(key, label, lower is better) of the figures compared in the "where it loses" list."""


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _flags(run: Run) -> str:
    flags: list[str] = []
    if run.get("extrapolated_from"):
        flags.append(f"extrapolated from {run['extrapolated_from']} jobs")
    if run.get("timed_out"):
        flags.append("hit its deadline")
    achieved, nominal = run.get("achieved_poll_interval_s"), run.get("nominal_poll_interval_s")
    if achieved is not None and nominal and achieved > 1.5 * nominal:
        flags.append(f"polled every {achieved:.0f} s, not {nominal:.0f} s (client saturated)")
    share = run.get("client_cpu_share")
    if share is not None and share > CPU_BOUND_SHARE:
        flags.append(
            f"client CPU-bound ({share:.0%} of a core): timings measure this machine's CPU"
        )
    if run.get("errors_sample"):
        flags.append("errors: " + ", ".join(run["errors_sample"]))
    return "; ".join(flags)


def _table(cell: dict[str, Any]) -> list[str]:
    lines = [
        "| competitor | makespan (s) | x ideal | status req/job | req/job | mean delay (s) "
        "| p99 delay (s) | 429s | failed | lost | dup. | CPU s/1k jobs | client CPU | "
        "peak RSS (MB) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in cell["runs"]:
        lines.append(
            f"| {run['competitor']} | {_num(run['makespan_s'], 0)} | "
            f"{_num(run['makespan_ratio'], 2)} | {_num(run['status_requests_per_job'], 2)} | "
            f"{_num(run['requests_per_job'], 2)} | {_num(run['mean_delay_s'])} | "
            f"{_num(run['p99_delay_s'])} | {_num(run['http_429'])} | {_num(run['failed'])} | "
            f"{_num(run['lost'])} | {_num(run['duplicates'])} | "
            f"{_num(run['cpu_s_per_1k_jobs'], 2)} | {_share(run.get('client_cpu_share'))} | "
            f"{_num(run['peak_rss_mb'], 0)} | "
            f"{_flags(run)} |"
        )
    return lines


def losses(document: dict[str, Any]) -> list[str]:
    """Every (cell, figure) where some competitor beats veo_async."""
    out: list[str] = []
    for cell in document["cells"]:
        runs = {r["competitor"]: r for r in cell["runs"]}
        sdk = runs.get("veo_async")
        if sdk is None:
            continue
        for key, label, lower in FIGURES:
            mine = sdk.get(key)
            if mine is None:
                continue
            better: list[str] = []
            for name, run in runs.items():
                theirs = run.get(key)
                if name == "veo_async" or theirs is None:
                    continue
                if key in ("makespan_ratio", "cpu_s_per_1k_jobs") and run.get("extrapolated_from"):
                    continue
                if (theirs < mine * 0.98 - 1e-9) if lower else (theirs > mine * 1.02):
                    better.append(f"{name} {_num(theirs, 2)}")
            if better:
                out.append(
                    f"- {cell['condition']}/N={cell['n']:,}, {label}: veo_async "
                    f"{_num(mine, 2)} vs " + ", ".join(better)
                )
    return out


def markdown(document: dict[str, Any], analysis: str | None = None) -> str:
    """The report page."""
    m = document["machine"]
    s = document["settings"]
    lines = [
        "# veo-async benchmarks: side by side with the usual ways",
        "",
        "Generated by `benchmarks/report.py` from `results.json`; how to run and what each "
        "figure means: [benchmarks/README.md]"
        "(https://github.com/veo-async/veo-async/blob/main/benchmarks/README.md).",
        "",
        f"- Command: `{document['command']}` ({document['mode']} run, "
        f"{document['wall_seconds']:.0f} s wall in all)",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']} RAM, "
        f"{m['implementation']} {m['python']}, {m['platform']}",
        f"- Emulator (own process, loopback): Veo2 timing (about 45 s per clip), "
        f"max_concurrent={s['max_concurrent']} per key (poller: unlimited), "
        f"queue delay {s['queue_delay_s']} s, seed {s['seed']}; rate-limited: "
        f"{s['rate_limit_per_s']:g} requests/s, burst {s['rate_limit_burst']:g}; "
        f"faults: FaultConfig.mixed({s['fault_rate']:g})"
        + (
            f", a slow response held {s['slow_response_s']:g} real-time s."
            if "slow_response_s" in s
            else "."
        ),
        "- All times are real-time-equivalent seconds: wall seconds divided by the cell's "
        "time scale (listed per cell).",
        "",
    ]
    notes = sorted({n for c in document["cells"] for r in c["runs"] for n in r.get("notes", [])})
    if notes:
        lines += ["How veo_async was told the time scale: " + "; ".join(notes) + ".", ""]
    if document.get("rss_note"):
        lines += [f"Note: {document['rss_note']}.", ""]
    if analysis:
        lines += [analysis.strip(), ""]
    lines += ["## Results per scenario", ""]
    for cell in document["cells"]:
        ideal = cell.get("ideal_makespan_s")
        lines += [
            f"### {cell['condition']}, N = {cell['n']:,} (time scale {cell['time_scale']:g})",
            "",
            f"Ideal makespan allowed by the emulator's limits: {_num(ideal, 0)} s.",
            "",
            *_table(cell),
            "",
        ]
    lines += ["## Where veo_async does not win (computed)", ""]
    lost = losses(document)
    lines += lost or ["- nowhere: veo_async is best or tied on every figure of every cell"]
    lines += [
        "",
        "## Charts",
        "",
        "![requests per job against detection delay](requests_vs_delay.png)",
        "",
        "![makespan and memory against N](scaling.png)",
        "",
    ]
    return "\n".join(lines)


def _series(
    document: dict[str, Any], condition: str, key: str
) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for cell in document["cells"]:
        if cell["condition"] != condition:
            continue
        for run in cell["runs"]:
            value = run.get(key)
            if value is None:
                continue
            xs, ys = out.setdefault(run["competitor"], ([], []))
            xs.append(cell["n"])
            ys.append(float(value))
    return out


def charts(document: dict[str, Any], out: Path) -> list[Path]:
    """Draw the two PNG charts; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"documented": "s", "gather-10s": "^", "gather-2s": "v", "veo_async": "o"}
    conditions = ["limits", "rate_limited", "faults", "poller"]
    colors = dict(zip(conditions, ["tab:blue", "tab:orange", "tab:red", "tab:green"], strict=True))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for cell in document["cells"]:
        for run in cell["runs"]:
            x, y = run.get("status_requests_per_job"), run.get("mean_delay_s")
            if x is None or y is None or x <= 0 or y <= 0:
                continue
            ax.scatter(
                x,
                y,
                marker=markers.get(run["competitor"], "x"),
                color=colors.get(cell["condition"], "gray"),
                s=30 + 10 * len(str(cell["n"])),
                alpha=0.8,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("status requests per job (log)")
    ax.set_ylabel("mean detection delay, real-time s (log)")
    ax.set_title("Requests per job against detection delay (lower left is better)")
    for name, marker in markers.items():
        ax.scatter([], [], marker=marker, color="black", label=name)
    for condition, color in colors.items():
        ax.scatter([], [], marker="s", color=color, label=condition)
    ax.legend(fontsize=8, ncol=2, title="marker: competitor, colour: scenario; size: N")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    first = out / "requests_vs_delay.png"
    fig.savefig(first, dpi=110)
    plt.close(fig)

    panels: list[tuple[str, str, Callable[[Any], None]]] = [
        ("makespan_s", "makespan, real-time s (limits)", lambda a: a.set_yscale("log")),
        ("makespan_ratio", "makespan / ideal (limits)", lambda a: None),
        ("peak_rss_mb", "peak RSS of the client, MB (limits)", lambda a: None),
        ("cpu_s_per_1k_jobs", "client CPU s per 1k jobs (limits)", lambda a: None),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for axis, (key, title, extra) in zip(axes.flat, panels, strict=True):
        series = _series(document, "limits", key)
        for name, (xs, ys) in series.items():
            axis.plot(xs, ys, marker=markers.get(name, "x"), label=name)
        axis.set_xscale("log")
        extra(axis)
        axis.set_xlabel("N jobs")
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        if series:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "not measured in this run", ha="center", transform=axis.transAxes)
    fig.suptitle("Scaling with N (documented loop extrapolated from a sample)")
    fig.tight_layout()
    second = out / "scaling.png"
    fig.savefig(second, dpi=110)
    plt.close(fig)
    return [first, second]


def render(document: dict[str, Any], out: Path, *, with_charts: bool = True) -> None:
    """Write ``README.md`` (and the charts) for ``document`` into ``out``."""
    analysis_path = out / "analysis.md"
    analysis = analysis_path.read_text() if analysis_path.exists() else None
    (out / "README.md").write_text(markdown(document, analysis))
    if with_charts:
        charts(document, out)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report RESULTS_JSON``: re-render next to the JSON."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path("docs/benchmarks/results.json")
    render(json.loads(path.read_text()), path.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
