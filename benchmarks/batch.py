"""Throughput of ``isovox batch``: groups per minute on this machine, by worker layout, same cohort.

A synthetic BIDS cohort of N subjects, each three orthogonal x4 scans cut from Colin27 (one subject =
one group of the default method), is run with each layout into a fresh output folder; the wall time
includes starting the local cluster. Prints a Markdown table.

Usage: .venv/bin/python benchmarks/batch.py [--subjects 8] [--layouts 1x2 2x1 threads] [--method srr]
  layouts: "WxT" = W worker processes with T torch threads per run; "threads" = one process, 2 worker
  threads (Dask's default for numpy code), 1 torch thread per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isovox import datasets, io
from isovox.simulate import Acquisition, simulate_scans

LAYOUT_CODE = """
import json, sys, time
from isovox.batch import BatchOptions, cluster, plan_batch, run_batch
from distributed import Client, LocalCluster
bids, out, layout, method = sys.argv[1:5]
start = time.perf_counter()
cluster.quiet_dask()
if layout == "threads":
    local = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    workers = cluster.Workers(Client(local), local, 1, 1, [])
else:
    count, threads = map(int, layout.split("x"))
    workers = cluster.local(count)
    workers.threads = threads
plan = plan_batch(bids, out, BatchOptions(method or None))
rows, _ = run_batch(plan, workers)
workers.close()
print(json.dumps({"seconds": time.perf_counter() - start, "done": sum(r["status"] == "done" for r in rows),
                  "run_seconds": [r["seconds"] for r in rows]}))
"""


def make_cohort(root: Path, subjects: int) -> None:
    """Colin27's three orthogonal x4 scans per subject, each subject with its own noise seed."""
    hr = io.read_volume(datasets.fetch("colin27"))
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "throughput", "BIDSVersion": "1.9.0"}))
    for s in range(1, subjects + 1):
        anat = root / f"sub-{s:02d}" / "anat"
        anat.mkdir(parents=True)
        scans = simulate_scans(hr, [Acquisition(axis=a, scale=4.0, noise=0.01, seed=100 * s + a) for a in (2, 1, 0)])
        for name, scan in zip(("axial", "coronal", "sagittal"), scans):
            io.write_volume(scan, anat / f"sub-{s:02d}_acq-{name}_T2w.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1", "threads"])
    parser.add_argument("--method", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        make_cohort(bids, args.subjects)
        print(f"\n### isovox batch throughput: {args.subjects} groups (three x4 Colin27 scans each, "
              f"{args.method or 'default method'}), {os.cpu_count()} cores\n")
        print("| layout | wall s | groups done | groups / min | median run s |\n|---|---|---|---|---|")
        for layout in args.layouts:
            out = Path(tmp) / f"out-{layout}"
            result = subprocess.run([sys.executable, "-c", LAYOUT_CODE, str(bids), str(out), layout, args.method],
                                    capture_output=True, text=True)
            if result.returncode:
                sys.exit(result.stderr[-2000:])
            row = json.loads(result.stdout.strip().splitlines()[-1])
            runs = sorted(row["run_seconds"])
            print(f"| {layout} | {row['seconds']:.1f} | {row['done']} | {60 * row['done'] / row['seconds']:.2f} | "
                  f"{runs[len(runs) // 2]:.1f} |", flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
