"""Super-resolution in a background process, with progress and Cancel.

The widget must stay responsive during a run of minutes, so (as SlicerMONAIAuto3DSeg
does) the job runs in another Python process: the inputs are written to a temporary
folder, the engine's command line (``isovox run --progress lines``) writes the result there,
and the widget polls for progress lines on a timer. Cancel kills the process; the
result node is only made after a successful run, so a cancelled or failed run leaves
no half-made node, and the temporary folder is removed either way.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

from isovox.errors import CancelledError
from isovox.frontend import PROGRESS_PREFIX, ExitCode, error_for_exit, parse_progress, run_arguments
from isovox.options import RunOptions
from isovox.io import read_volume, scan_record, sidecar_path, write_volume

from .convert import add_volume_node, node_label
from .logic import IsoVoxLogic, as_node_list, output_name, record_sources, set_provenance


def engine_command(python: str, scans: Sequence[str], output: str, method: Optional[str] = None,
                   spacing: Any = None, reference: Optional[str] = None, device: str = "auto",
                   options: Optional[RunOptions] = None) -> list[str]:
    """The ``isovox run`` command line for these settings."""
    command = [python, "-m", "isovox.cli.main", "run", *map(str, scans), "-o", str(output), "--device", device,
               "--progress", "lines"]
    if method:
        command += ["--method", method]
    if spacing is not None:
        text = ",".join(f"{float(s):g}" for s in spacing) if isinstance(spacing, (list, tuple)) else str(spacing)
        command += ["--spacing", text]
    if reference:
        command += ["--reference", str(reference)]
    return command + run_arguments(options or RunOptions())


class EngineProcess:
    """One engine process: output lines collected by a reader thread, killable as a group."""

    def __init__(self, command: Sequence[str], env: Optional[dict[str, str]] = None) -> None:
        self.command = list(command)
        self.env = env
        self.lines: list[str] = []
        self.cancelled = False
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        extra: dict[str, Any] = {}
        if os.name == "nt":
            extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            extra["start_new_session"] = True  # its own process group: Cancel kills launcher and child
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, errors="replace", env=self.env, **extra)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._queue.put(line.rstrip("\r\n"))
        self._proc.stdout.close()

    def poll(self) -> list[str]:
        """New output lines since the last call (never blocks)."""
        new = []
        while True:
            try:
                new.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.lines.extend(new)
        return new

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return None if self._proc is None else self._proc.poll()

    def wait(self, timeout: Optional[float] = None) -> int:
        assert self._proc is not None
        code = self._proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(5)
        self.poll()
        return code

    def cancel(self) -> None:
        """Stop the process and its children now."""
        self.cancelled = True
        if not self.running:
            return
        assert self._proc is not None
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._proc.pid)], capture_output=True)
            else:
                os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            self._proc.kill()
        self._proc.wait()

    def error_message(self) -> str:
        """The engine's own one-line error, else the last output line."""
        for line in reversed(self.lines):
            if line.startswith("isovox:"):
                return line.split("error:", 1)[-1].strip() if "error:" in line else line[len("isovox:"):].strip()
        tail = [line for line in self.lines if line and not line.startswith(PROGRESS_PREFIX)]
        return tail[-1] if tail else f"the engine stopped with exit code {self.returncode}"


class BackgroundRun:
    """Validate in-process, run the engine in a background process, then make the result node.

    Use: ``run = BackgroundRun(...)`` (raises InputError at once for bad settings),
    ``run.start()``, call ``run.poll()`` from a timer until ``run.running`` is False,
    then ``node = run.finish()``; ``run.cancel()`` at any time.
    """

    def __init__(self, logic: IsoVoxLogic, input_nodes: Sequence[Any], method: Optional[str] = "cubeavg",
                 spacing: Any = None, reference: Any = None, device: str = "auto", output_node: Any = None,
                 python: Optional[str] = None, options: Optional[RunOptions] = None) -> None:
        self.input_nodes = as_node_list(input_nodes)
        self.reference = reference
        self.output_node = output_node
        options = options or RunOptions()
        self.plan = logic.plan(self.input_nodes, method, spacing, reference, device, options=options)  # refuse early
        self.method = self.plan.method.name
        self.folder = Path(tempfile.mkdtemp(prefix="isovox-slicer-"))
        self.output_path = self.folder / "result.nrrd"
        self.progress: tuple[float, str] = (0.0, "starting")
        try:
            scans = [self._write(logic.volume(n), f"scan{i + 1}.nrrd") for i, n in enumerate(self.input_nodes)]
            ref = self._write(logic.volume(reference), "reference.nrrd") if reference is not None else None
        except Exception:
            self.cleanup()
            raise
        command = engine_command(python or sys.executable, scans, str(self.output_path), self.method, spacing, ref,
                                 device, options)
        self.process = EngineProcess(command)

    def _write(self, volume: Any, name: str) -> str:
        path = self.folder / name
        write_volume(volume, path, sidecar=scan_record(volume))  # thickness and missing slices travel along
        return str(path)

    def start(self) -> None:
        self.process.start()

    @property
    def running(self) -> bool:
        return self.process.running

    def poll(self) -> tuple[float, str]:
        """The latest (fraction, message) reported by the engine."""
        for line in self.process.poll():
            update = parse_progress(line)
            if update is not None:
                self.progress = update
        return self.progress

    def cancel(self) -> None:
        self.process.cancel()
        self.cleanup()

    def finish(self) -> Any:
        """The result node; raises CancelledError/InputError/ResourceError with the engine's message."""
        try:
            code = self.process.wait()
            self.poll()
            if self.process.cancelled or code == ExitCode.CANCELLED:
                raise CancelledError("cancelled by the user")
            if code != ExitCode.OK or not self.output_path.exists():
                raise error_for_exit(code, self.process.error_message())
            return self._load_result()
        finally:
            self.cleanup()

    def _load_result(self) -> Any:
        volume = read_volume(self.output_path)
        scene = self.input_nodes[0].GetScene()
        node = add_volume_node(scene, volume, output_name(self.input_nodes, self.method), self.output_node)
        sidecar = sidecar_path(self.output_path)
        provenance = json.loads(sidecar.read_text()) if sidecar.exists() else {"method": self.method, "inputs": []}
        for entry, source in zip(provenance.get("inputs", []), self.input_nodes):
            entry["node"] = node_label(source)
            entry.pop("path", None)  # a temporary file, gone after this run (its SHA-256 names the voxels)
        provenance = record_sources(provenance, self.input_nodes)
        if self.reference is not None:
            provenance["reference"] = node_label(self.reference)
        set_provenance(node, provenance)
        return node

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
