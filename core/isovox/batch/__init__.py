"""Cohorts: super-resolve a whole BIDS dataset as a BIDS App, on this machine or on a Dask cluster.

``plan_batch`` finds the thick-slice anatomical scans per subject, session and suffix, and decides from
headers alone what each run will be (method, grid, memory, time, and whether an earlier batch already
made it). ``run_batch`` hands the runs to Dask and writes BIDS derivatives: one result and sidecar per
group, ``dataset_description.json``, and a summary table per batch. Dask is imported only here.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import __version__
from ..errors import InputError
from ..resources import human_bytes
from .bids import Group, find_images, group_images
from .plan import BatchOptions, GroupPlan, plan_group

__all__ = ["BatchOptions", "BatchPlan", "plan_batch", "run_batch", "write_description", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ("group", "subject", "session", "suffix", "inputs", "method", "status", "reason", "seconds",
                   "worker", "host", "output")
DERIVATIVE_NAME = "isovox"


@dataclass
class BatchPlan:
    bids_dir: Path
    out_dir: Path
    options: BatchOptions
    groups: list[GroupPlan] = field(default_factory=list)

    @property
    def to_run(self) -> list[GroupPlan]:
        return [g for g in self.groups if not g.done and not g.problem]

    def table(self) -> list[str]:
        """The dry run's lines: one per group, then the totals."""
        lines = []
        width = max((len(g.group.label) for g in self.groups), default=10)
        for g in self.groups:
            n = len(g.group.scans)
            head = f"{g.group.label:<{width}}  {n} scan{'s' * (n != 1):<1}"
            if g.problem:
                lines.append(f"{head}  will fail: {g.problem}")
                continue
            shape = "x".join(map(str, g.grid_shape))
            state = "done (skipped)" if g.done else "run"
            lines.append(f"{head}  {g.method:<12} {shape:>12}  {human_bytes(g.memory_bytes):>9}  ~{g.seconds:5.0f} s"
                         f"  {state}")
            lines += [f"{'':<{width}}  note: {note}" for note in g.group.notes]
        seconds = sum(g.seconds for g in self.to_run)
        failing = sum(bool(g.problem) for g in self.groups)
        lines.append(f"{len(self.groups)} groups: {len(self.to_run)} to run (~{seconds / 60:.1f} min of one "
                     f"worker), {sum(g.done for g in self.groups)} already done, {failing} will fail")
        return lines


def plan_batch(bids_dir: str | os.PathLike, out_dir: str | os.PathLike, options: BatchOptions,
               participants: Sequence[str] = (), sessions: Sequence[str] = (),
               suffixes: Sequence[str] = ()) -> BatchPlan:
    bids_dir, out_dir = Path(bids_dir).resolve(), Path(out_dir).resolve()
    if out_dir == bids_dir:
        raise InputError("the output folder must not be the BIDS dataset itself (use BIDS_DIR/derivatives/isovox)")
    check_out_dir(out_dir)
    images = find_images(bids_dir, participants, sessions)
    groups: list[Group] = group_images(images, suffixes)
    if not groups:
        raise InputError(f"{bids_dir}: no thick-slice anatomical scans"
                         + (f" with suffix {', '.join(suffixes)}" if suffixes else "") + " to super-resolve")
    if options.method:
        from ..methods import get_method

        get_method(options.method)  # an unknown method is one clear error before anything runs
    return BatchPlan(bids_dir, out_dir, options, [plan_group(g, bids_dir, out_dir, options) for g in groups])


def check_out_dir(out_dir: Path) -> None:
    """Refuse to write derivatives into a folder that holds another BIDS dataset."""
    description = out_dir / "dataset_description.json"
    if not description.exists():
        return
    try:
        record = json.loads(description.read_text())
        ours = record.get("DatasetType") == "derivative" and any(
            g.get("Name") == DERIVATIVE_NAME for g in record.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError, TypeError):
        ours = False
    if not ours:
        raise InputError(f"{out_dir} holds a dataset that isovox did not make; choose another output folder")


def write_description(plan: BatchPlan) -> Path:
    """``dataset_description.json`` of the derivative dataset (written atomically)."""
    record = {
        "Name": "isovox super-resolution",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": DERIVATIVE_NAME, "Version": __version__,
                         "Description": "isotropic volumes from thick-slice scans (isovox batch)"}],
        "SourceDatasets": [{"URL": plan.bids_dir.as_uri()}],
        "DatasetLinks": {"raw": plan.bids_dir.as_uri()},
    }
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{plan.out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    path = plan.out_dir / "dataset_description.json"
    staged = path.with_name(".dataset_description.json.tmp")
    staged.write_text(json.dumps(record, indent=2))
    os.replace(staged, path)
    ignore = plan.out_dir / ".bidsignore"
    if not ignore.exists():
        ignore.write_text("logs/\n")
    return path


def summary_row(g: GroupPlan, row: dict) -> dict:
    return {"group": g.group.label, "subject": g.group.subject, "session": g.group.session or "",
            "suffix": g.group.suffix, "inputs": " ".join(str(p) for p in g.inputs),
            "method": row.get("method") or g.method, "status": row.get("status", "failed"),
            "reason": row.get("reason", ""), "seconds": row.get("seconds", ""), "worker": row.get("worker", ""),
            "host": row.get("host", ""), "output": str(g.output) if row.get("status") in ("done", "skipped") else ""}


def write_summary(plan: BatchPlan, rows: list[dict]) -> Path:
    """``OUT/logs/batch-<UTC time>.tsv``: one row per group with its status and reason."""
    folder = plan.out_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"batch-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.tsv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, SUMMARY_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: str(row.get(k, "")).replace("\t", " ").replace("\n", " ") for k in SUMMARY_COLUMNS})
    return path


def run_batch(plan: BatchPlan, workers, on_done: Callable[[dict], None] = lambda row: None,
              on_stage: Callable[[dict], None] = lambda event: None) -> tuple[list[dict], Path]:
    """Run every group not yet done on ``workers`` (:mod:`isovox.batch.cluster`); returns the summary rows
    (in plan order) and the summary table's path."""
    from . import cluster
    from .work import run_group

    write_description(plan)
    rows: dict[str, dict] = {}
    for g in plan.groups:
        if g.done:
            rows[g.group.label] = summary_row(g, {"status": "skipped", "reason": "done by an earlier batch"})
        elif g.problem:
            rows[g.group.label] = summary_row(g, {"status": "failed", "reason": g.problem})
    for label in rows:
        on_done(rows[label])
    by_label = {g.group.label: g for g in plan.groups}

    def done(label: str, row: dict) -> None:
        rows[label] = summary_row(by_label[label], row)
        on_done(rows[label])

    jobs = [(g.group.label, g.memory_bytes, (g, plan.options)) for g in plan.to_run]
    try:
        cluster.run(workers, jobs, run_group, done, on_stage)
    finally:
        ordered = [rows.get(g.group.label) or summary_row(g, {"status": "cancelled", "reason": "the batch stopped"})
                   for g in plan.groups]
        summary = write_summary(plan, ordered)
    return ordered, summary
