"""What a study leaves in its output directory: the trials as a table (``trials.csv``,
``trials.md``), the metric against the learning rate (``learning_rate.png``), the best values as a
run config (``best.yaml``) and ``tune_results.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def record_trial(trial, values: dict, seconds: float, reporter) -> None:
    """Keep what the table shows with the trial (its values, strategy included; the metric's name
    and value; the last step evaluated; its seconds)."""
    trial.set_user_attr("values", values)
    trial.set_user_attr("seconds", round(seconds, 2))
    trial.set_user_attr("metric", reporter.metric)
    trial.set_user_attr("value", reporter.value)
    trial.set_user_attr("step", reporter.step)


def trial_rows(study) -> list[dict]:
    """One row per trial, in order: number, state, the values, the metric, seconds, step."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows.append({
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "source": attrs.get("source") or (
                f"retry of {attrs['retry_of']}" if "retry_of" in attrs else "optuna"),
            "values": attrs.get("values", trial.params),
            "metric": attrs.get("metric"),
            "value": attrs.get("value"),
            "step": attrs.get("step"),
            "seconds": attrs.get("seconds"),
        })  # fmt: skip
    return rows


def write_reports(study, output: Path, write_best) -> dict:
    """Write the tables, the plot, ``best.yaml`` (through ``write_best(values)``) and
    ``tune_results.json``; returns the results (``best`` is None where no trial completed)."""
    rows = trial_rows(study)
    options = sorted({k for row in rows for k in row["values"]}, key=_option_order)
    _write_csv(output / "trials.csv", rows, options)
    complete = [row for row in rows if row["state"] == "complete"]
    best_row = None
    if complete:
        best_trial = study.best_trial
        best_row = next(row for row in rows if row["trial"] == best_trial.number)
    (output / "trials.md").write_text(_markdown(rows, options, best_row))
    plot = _plot_learning_rate(rows, output / "learning_rate.png")
    counts = {state.lower(): sum(r["state"] == state.lower() for r in rows) for state in STATES}
    seconds = sum(row["seconds"] or 0 for row in rows)
    results = {
        "trials": {k: v for k, v in counts.items() if v},
        "seconds": round(seconds, 1),
        "best": None,
        "plot": plot,
    }
    if best_row is not None:
        config = write_best(best_row["values"])
        results["best"] = {
            "trial": best_row["trial"], "values": best_row["values"],
            "metric": best_row["metric"], "value": best_row["value"], "config": str(config),
        }  # fmt: skip
    counted = ", ".join(f"{v} {k}" for k, v in results["trials"].items())
    results["summary"] = f"{len(rows)} trials ({counted}) in {seconds / 60:.1f} min; " + (
        f"best: trial {best_row['trial']}, {best_row['metric']} {best_row['value']:.4f} "
        f"-> {results['best']['config']}"
        if best_row
        else "no trial completed"
    )
    (output / "tune_results.json").write_text(json.dumps(results, indent=2))
    return results


def _option_order(name: str) -> tuple:
    first = ("strategy", "learning_rate", "weight_decay")
    return (first.index(name) if name in first else len(first), name)


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.4g}"
    return str(value)


def _write_csv(path: Path, rows: list[dict], options: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", "source", *options, "metric", "value", "step",
                         "seconds"])  # fmt: skip
        for row in rows:
            writer.writerow([row["trial"], row["state"], row["source"],
                             *(row["values"].get(o, "") for o in options), row["metric"] or "",
                             "" if row["value"] is None else row["value"], row["step"] or "",
                             row["seconds"] or ""])  # fmt: skip


def _markdown(rows: list[dict], options: list[str], best: dict | None) -> str:
    metric = next((row["metric"] for row in rows if row["metric"]), "metric")
    lines = [
        "| trial | state | " + " | ".join(options) + f" | {metric} | step | seconds |",
        "|" + "---|" * (len(options) + 5),
    ]
    for row in rows:
        mark = " (best)" if best is not None and row["trial"] == best["trial"] else ""
        cells = [f"{row['trial']}{mark}", row["state"] + ("" if row["source"] == "optuna"
                                                          else f" ({row['source']})")]  # fmt: skip
        cells += [_shown(row["values"].get(o)) for o in options]
        cells += [_shown(row["value"]), _shown(row["step"]), _shown(row["seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot_learning_rate(rows: list[dict], path: Path) -> str | None:
    """The metric of each trial against its learning rate (log scale); pruned trials at their
    last evaluation, hollow; one colour per strategy."""
    points = [r for r in rows if r["value"] is not None and "learning_rate" in r["values"]]
    if not points:
        return None
    from hftl.cards import agg_figure

    fig = agg_figure(6, 4)
    ax = fig.subplots()
    strategies = sorted({r["values"].get("strategy", "") for r in points})
    for index, strategy in enumerate(strategies):
        colour = f"C{index}"
        for state, filled in (("complete", True), ("pruned", False)):
            chosen = [r for r in points if r["state"] == state
                      and r["values"].get("strategy", "") == strategy]  # fmt: skip
            if chosen:
                ax.scatter([r["values"]["learning_rate"] for r in chosen],
                           [r["value"] for r in chosen], s=30, edgecolors=colour,
                           facecolors=colour if filled else "none",
                           label=f"{strategy} ({state})" if strategy else state)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(points[0]["metric"])
    ax.set_title("hftl tune: validation metric per trial")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name
