"""``isovox batch``: a BIDS App over a whole dataset (``bids_dir output_dir participant``) on Dask."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError


def add_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="super-resolve every subject of a BIDS dataset (a BIDS App, on Dask)",
                       description="Per subject and session, the thick-slice anat images of one suffix are one "
                                   "run of 1-3 scans; results are written as BIDS derivatives. Exit status: 0 when "
                                   "every group succeeded, else the number of groups that failed (at most 125).")
    p.add_argument("bids_dir", metavar="BIDS_DIR")
    p.add_argument("output_dir", metavar="OUT_DIR")
    p.add_argument("analysis_level", choices=["participant"], metavar="participant",
                   help="the analysis level (BIDS Apps); only 'participant'")
    p.add_argument("--participant-label", "--participant_label", dest="participants", nargs="+", default=[],
                   metavar="L", help="subjects to process (with or without 'sub-'; default all)")
    p.add_argument("--session", dest="sessions", nargs="+", default=[], metavar="S", help="sessions to process")
    p.add_argument("--suffix", dest="suffixes", nargs="+", default=[], metavar="T",
                   help="image suffixes to super-resolve, e.g. T2w FLAIR (default all with thick scans)")
    p.add_argument("--method", help="method name (see 'isovox methods'); default: what 'isovox run' picks")
    p.add_argument("--spacing", type=float, metavar="MM", help="output voxel size (default: finest input spacing)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default: one per core, as "
                                                                 "memory allows)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (groups, methods, memory, time) and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; only failures and the last line")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import BatchOptions, plan_batch, run_batch, write_description

    if args.spacing is not None and not 0 < args.spacing < 100:
        raise InputError("--spacing must be a positive number of mm")
    plan = plan_batch(args.bids_dir, args.output_dir, BatchOptions(args.method, args.spacing),
                      args.participants, args.sessions, args.suffixes)
    if args.dry_run:
        print("\n".join(plan.table()))
        return 0
    from ..batch import cluster

    try:
        import distributed  # noqa: F401 - only the batch command needs Dask
    except ImportError:
        raise InputError("isovox batch needs Dask: pip install 'dask[distributed]' (make setup installs it)") from None
    cluster.quiet_dask()
    write_description(plan)  # an unwritable output folder is refused before any worker starts
    workers = cluster.remote(args.scheduler) if args.scheduler else cluster.local(args.workers)
    try:
        report = Report(plan, workers, args.quiet)
        rows, summary = run_batch(plan, workers, report.done, report.stage)
        report.close()
    finally:
        workers.close()
    failed = sum(row["status"] != "done" and row["status"] != "skipped" for row in rows)
    done = sum(row["status"] == "done" for row in rows)
    skipped = sum(row["status"] == "skipped" for row in rows)
    print(f"isovox batch: {done} done, {skipped} skipped (already done), {failed} failed; summary {summary}",
          file=sys.stderr)
    return min(failed, 125)


class Report:
    """One bar over the groups, each running group's stage beside it, and a line per failure."""

    def __init__(self, plan, workers, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.stages: dict[str, str] = {}
        if not quiet:
            print(f"isovox batch: {len(plan.groups)} groups, {len(plan.to_run)} to run on {workers.describe()}",
                  file=sys.stderr)
            if workers.dashboard:
                print(f"isovox batch: Dask dashboard {workers.dashboard}", file=sys.stderr)
        self.bar = tqdm(total=len(plan.groups), desc="groups", unit="group", file=sys.stderr, disable=quiet or None,
                        leave=False)

    def done(self, row: dict) -> None:
        self.stages.pop(row["group"], None)
        if row["status"] not in ("done", "skipped"):
            self.bar.write(f"isovox batch: {row['group']} {row['status']}: {row['reason']}", file=sys.stderr)
        self.bar.update(1)
        self._show()

    def stage(self, event: dict) -> None:
        self.stages[event["group"]] = f"{event['group']} {100 * event['fraction']:.0f}% {event['message']}".strip()
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(" | ".join(self.stages.values())[:120], refresh=True)

    def close(self) -> None:
        self.bar.close()
