"""A seeded mutation fuzzer for every format isovox reads, checking the bad-input contract.

Seeds (small valid files: NIfTI-1 plain and gzipped, NIfTI-2, NRRD attached raw and gzip, NRRD
detached, MHA, MHD + raw, a DICOM series, a BIDS sidecar) are mutated: header fields set to extreme
values, bytes flipped, files truncated, gzip streams corrupted, sidecars bent (huge numbers, deep
nesting, wrong types), DICOM tags broken and slices removed or cut, empty files, broken symlinks.

Read phase: a worker process calls ``isovox.io.read_volume`` on each mutant; the contract is a valid
volume or one of isovox's own errors, the input untouched. A worker that dies (a native crash) or hangs
is a defect of that mutant; the fuzzer starts a new worker and goes on.
CLI phase: ``isovox run MUTANT -o OUT`` in a process per mutant: exit 0 with the output, or exit 1/2
with exactly one line on stderr, no output or sidecar left, and the input and its companions
byte-identical.

Usage: python scripts/fuzz.py [--mutants 10000] [--cli 300] [--seed 0] [--keep DIR]
Prints counts per format and outcome, and every defect; exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXTREMES = ["-1", "0", "1e30", "-1e30", "nan", "inf", "4294967296", "100", "1e300", "7.4e19", "3.5", "",
            "abc", "2 2", "65536 65536 65536", "-0"]
TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- seeds


def make_seeds(folder: Path) -> dict[str, Path]:
    """Small valid inputs of every format (DICOM as a folder)."""
    import nibabel as nib
    import SimpleITK as sitk

    from isovox.dicom_out import write_series
    from isovox.volume import Volume

    rng = np.random.default_rng(0)
    data = (rng.random((12, 10, 6)) * 100).astype(np.float32)
    affine = np.array([[0.9, 0.1, 0, -5], [-0.1, 0.9, 0, 3], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for name in ("n1.nii", "n1.nii.gz"):
        nib.save(nib.Nifti1Image(data, affine), str(folder / name))
        seeds[name.split(".", 1)[1]] = folder / name
    nib.save(nib.Nifti2Image(data, affine), str(folder / "n2.nii"))
    seeds["nifti2"] = folder / "n2.nii"
    (folder / "n1.json").write_text(json.dumps({"SliceThickness": 3, "SpacingBetweenSlices": 3}))
    seeds["sidecar"] = folder / "n1.nii"  # mutated through its sidecar
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0).astype(np.int16))
    image.SetSpacing((0.9, 0.9, 3.0))
    sitk.WriteImage(image, str(folder / "a.nrrd"), useCompression=False)
    sitk.WriteImage(image, str(folder / "z.nrrd"), useCompression=True)
    sitk.WriteImage(image, str(folder / "a.mha"), useCompression=False)
    sitk.WriteImage(image, str(folder / "d.mhd"), useCompression=False)
    seeds.update({"nrrd": folder / "a.nrrd", "nrrd.gz": folder / "z.nrrd", "mha": folder / "a.mha",
                  "mhd": folder / "d.mhd"})
    raw = data.transpose(2, 1, 0).astype(np.int16).tobytes()
    (folder / "det.raw").write_bytes(raw)
    (folder / "det.nhdr").write_text("NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\n"
                                     "sizes: 12 10 6\nspace directions: (0.9,0,0) (0,0.9,0) (0,0,3)\n"
                                     "endian: little\nencoding: raw\nspace origin: (1,2,3)\n"
                                     "data file: det.raw\n")
    seeds["nhdr"] = folder / "det.nhdr"
    write_series(Volume(data, affine, {}), folder / "dicom", "fuzz", description="seed")
    seeds["dicom"] = folder / "dicom"
    return seeds


# --------------------------------------------------------------------------- mutations


def _text_header_mutant(raw: bytes, rng: random.Random, separator: bytes) -> bytes:
    lines = raw.split(b"\n")
    header = [i for i, line in enumerate(lines[:40]) if separator in line]
    if not header:
        return raw
    i = rng.choice(header)
    key = lines[i].split(separator, 1)[0]
    lines[i] = key + separator + rng.choice(EXTREMES).encode()
    return b"\n".join(lines)


NIFTI1_FIELDS = [(40, "<8h"), (76, "<8f"), (108, "<f"), (70, "<h"), (72, "<h"), (252, "<h"), (254, "<h"),
                 (280, "<4f"), (296, "<4f"), (312, "<4f"), (256, "<3f"), (0, "<i")]


def _nifti_mutant(raw: bytes, rng: random.Random) -> bytes:
    gz = raw[:2] == b"\x1f\x8b"
    body = bytearray(gzip.decompress(raw) if gz else raw)
    offset, fmt = rng.choice(NIFTI1_FIELDS)
    count = struct.calcsize(fmt) // struct.calcsize(fmt[-1])
    kind = fmt[-1]
    pool = [-1, 0, 1, 3, 7, 100, 32767, -32768] if kind in "hi" else [-1.0, 0.0, 1e30, -1e30, float("nan"),
                                                                        float("inf"), 7.4e19, 1e-30, 2.5]
    values = list(struct.unpack_from(fmt, body, offset))
    values[rng.randrange(count)] = rng.choice(pool)
    if kind == "h":
        values = [max(-32768, min(32767, int(v))) for v in values]
    struct.pack_into(fmt, body, offset, *values)
    return gzip.compress(bytes(body), compresslevel=1) if gz else bytes(body)


def _flip(raw: bytes, rng: random.Random, header_bias: int = 400) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(min(len(data), header_bias) if rng.random() < 0.7 else len(data))
        data[at] = rng.randrange(256)
    return bytes(data)


def mutate_file(path: Path, kind: str, out: Path, rng: random.Random) -> str:
    """Write one mutant of the file ``path`` to ``out``; returns the mutation's name."""
    raw = path.read_bytes()
    choice = rng.random()
    if choice < 0.06:
        out.write_bytes(b"")
        return "empty"
    if choice < 0.2:
        out.write_bytes(raw[: rng.randrange(1, max(2, len(raw)))])
        return "truncated"
    if choice < 0.35 and raw[:2] == b"\x1f\x8b":
        data = bytearray(raw)
        at = rng.randrange(10, len(data))
        data[at] ^= 0xFF
        out.write_bytes(bytes(data))
        return "gzip-corrupt"
    if choice < 0.75:
        if kind in ("nrrd", "nrrd.gz", "nhdr"):
            out.write_bytes(_text_header_mutant(raw, rng, b": "))
        elif kind in ("mha", "mhd"):
            out.write_bytes(_text_header_mutant(raw, rng, b" = "))
        else:
            out.write_bytes(_nifti_mutant(raw, rng))
        return "header-field"
    out.write_bytes(_flip(raw, rng))
    return "byte-flip"


SIDECAR_VALUES = [10**400, -3, float("nan"), "5", True, None, [1, 2], 1e308, 0]


def mutate_sidecar(folder: Path, rng: random.Random) -> str:
    side = folder / "n1.json"
    choice = rng.random()
    if choice < 0.2:
        side.write_text("[" * 100000 + "]" * 100000)
        return "sidecar-deep"
    if choice < 0.35:
        side.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
        return "sidecar-garbage"
    key = rng.choice(["SliceThickness", "SpacingBetweenSlices", "IsovoxAcquiredSlices", "IsovoxSlicePositions"])
    value = rng.choice(SIDECAR_VALUES)
    text = json.dumps({key: value}, allow_nan=True) if not isinstance(value, int) or abs(value) < 1e300 \
        else '{"%s": %d}' % (key, value)
    side.write_text(text)
    return "sidecar-field"


def mutate_dicom(folder: Path, rng: random.Random) -> str:
    import pydicom

    files = sorted(folder.iterdir())
    choice = rng.random()
    if choice < 0.2:
        rng.choice(files).unlink()
        return "dicom-missing-file"
    target = rng.choice(files)
    if choice < 0.35:
        raw = target.read_bytes()
        target.write_bytes(raw[: rng.randrange(132, len(raw))])
        return "dicom-truncated"
    if choice < 0.45:
        target.write_bytes(_flip(target.read_bytes(), rng, header_bias=len(target.read_bytes())))
        return "dicom-byte-flip"
    ds = pydicom.dcmread(str(target))
    field = rng.choice(["SliceThickness", "SpacingBetweenSlices", "PixelSpacing", "ImagePositionPatient",
                        "ImageOrientationPatient", "Rows", "Columns", "RescaleSlope", "BitsAllocated",
                        "NumberOfFrames", "SeriesInstanceUID"])
    value = rng.choice(["nan", "-1", "0", "inf", "1e30", "", "7"])
    try:
        if field in ("PixelSpacing",):
            setattr(ds, field, [value, value])
        elif field in ("ImagePositionPatient",):
            setattr(ds, field, [value, "0", "0"])
        elif field == "ImageOrientationPatient":
            setattr(ds, field, [value, "0", "0", "0", value, "0"])
        elif field in ("Rows", "Columns", "BitsAllocated", "NumberOfFrames"):
            setattr(ds, field, int(float(value)) if value not in ("nan", "inf", "", "1e30") else 65535)
        else:
            setattr(ds, field, value)
        ds.save_as(str(target))
    except Exception:  # noqa: BLE001 - a value pydicom will not write: flip bytes instead
        target.write_bytes(_flip(target.read_bytes(), rng))
    return f"dicom-{field}"


def make_mutant(seeds: dict[str, Path], kind: str, folder: Path, rng: random.Random) -> tuple[Path, str]:
    """A mutant of seed ``kind`` in the new ``folder`` with its companions; (path to read, mutation)."""
    folder.mkdir()
    seed = seeds[kind]
    if kind == "dicom":
        shutil.copytree(seed, folder / "series")
        return folder / "series", mutate_dicom(folder / "series", rng)
    if kind == "sidecar":
        shutil.copy(seed, folder / seed.name)
        return folder / seed.name, mutate_sidecar(folder, rng)
    if rng.random() < 0.02:
        (folder / seed.name).symlink_to(folder / "nowhere")
        return folder / seed.name, "broken-symlink"
    if kind in ("nhdr", "mhd"):
        data = "det.raw" if kind == "nhdr" else "d.raw"
        shutil.copy(seed.parent / data, folder / data)
        if rng.random() < 0.3:
            mutate_file(seed.parent / data, "raw", folder / data, rng) if rng.random() < 0.5 else \
                (folder / data).unlink()
            shutil.copy(seed, folder / seed.name)
            return folder / seed.name, "detached-data"
    name = mutate_file(seed, kind, folder / seed.name, rng)
    return folder / seed.name, name


def digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file under ``path``'s folder (the input and its companions)."""
    root = path.parent
    out = {}
    for item in sorted(root.rglob("*")):
        if item.is_file() and not item.is_symlink() and "out" not in item.relative_to(root).parts[:1]:
            out[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------- read phase (worker)


def worker() -> None:
    """Read each path from stdin; print one JSON line per path (outcome and message)."""
    from isovox.errors import IsovoxError
    from isovox.io import read_volume, validate_volume

    for line in sys.stdin:
        path = line.strip()
        try:
            volume = read_volume(path)
            validate_volume(volume, path)
            result = {"outcome": "valid"}
        except IsovoxError as exc:
            result = {"outcome": "refused", "message": str(exc)[:200]}
        except Exception as exc:  # noqa: BLE001 - the defect the fuzzer looks for
            result = {"outcome": "internal", "message": f"{type(exc).__name__}: {str(exc)[:200]}"}
        print(json.dumps(result), flush=True)


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def read(self, path: Path) -> dict:
        import select

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        if not ready:
            self.proc.kill()
            return {"outcome": "hang", "message": f"no answer in {TIMEOUT_S:g} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"outcome": "crash", "message": f"worker died with exit status {code}"}
        return json.loads(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(10)


# --------------------------------------------------------------------------- CLI phase


def cli_check(path: Path, out_folder: Path) -> tuple[str, str]:
    """(outcome, detail) of ``isovox run MUTANT -o OUT`` against the contract."""
    out = out_folder / "result.nii.gz"
    before = digest(path)
    proc = subprocess.run([sys.executable, "-m", "isovox.cli.main", "run", str(path), "--method", "bspline",
                           "-o", str(out), "-q"], capture_output=True, text=True, timeout=300)
    after = digest(path)
    if before != after:
        return "changed-input", "an input or companion file changed"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode == 0:
        return ("ok", "") if out.exists() else ("no-output", "exit 0 without the output")
    if proc.returncode not in (1, 2):
        return "bad-exit", f"exit {proc.returncode}: {' | '.join(lines[-3:])}"
    if len(lines) != 1 or "Traceback" in proc.stderr:
        return "stderr", f"{len(lines)} lines on stderr: {' | '.join(lines[:3])}"
    if out.exists() or (out_folder / "result.json").exists() or any(p.name.startswith(".isovox")
                                                                    for p in out_folder.iterdir()):
        return "partial-output", "an output was left behind"
    return "refused", lines[0][:160]


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=10000)
    parser.add_argument("--cli", type=int, default=300, help="mutants also run through 'isovox run'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the mutants in this folder (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    import warnings

    warnings.simplefilter("ignore")  # pydicom complains about the values the fuzzer writes on purpose
    rng = random.Random(args.seed)
    root = Path(args.keep or tempfile.mkdtemp(prefix="isovox-fuzz-"))
    seeds = make_seeds(root / "seeds")
    kinds = sorted(seeds)
    counts: dict[tuple[str, str], int] = collections.Counter()
    defects: list[str] = []
    started = time.monotonic()
    pool = Worker()
    cli_every = max(1, args.mutants // max(1, args.cli)) if args.cli else 0
    cli_counts: dict[str, int] = collections.Counter()
    for index in range(args.mutants):
        kind = kinds[index % len(kinds)]
        folder = root / f"m{index:06d}"
        path, mutation = make_mutant(seeds, kind, folder, rng)
        before = digest(path)
        if not pool.alive:
            pool = Worker()
        result = pool.read(path)
        if digest(path) != before:
            result = {"outcome": "changed-input", "message": "reading changed a file"}
        counts[(kind, result["outcome"])] += 1
        if result["outcome"] not in ("valid", "refused"):
            defects.append(f"read {kind}/{mutation} {path}: {result['outcome']}: {result.get('message', '')}")
        if cli_every and index % cli_every == 0:
            out_folder = folder / "out"
            out_folder.mkdir()
            outcome, detail = cli_check(path, out_folder)
            cli_counts[outcome] += 1
            if outcome not in ("ok", "refused"):
                defects.append(f"cli {kind}/{mutation} {path}: {outcome}: {detail}")
        if not args.keep and not any(str(folder) in d for d in defects):
            shutil.rmtree(folder, ignore_errors=True)
    pool.close()
    seconds = time.monotonic() - started
    print(f"\n### Fuzzing: {args.mutants} mutants (seed {args.seed}), {sum(cli_counts.values())} CLI runs, "
          f"{seconds:.0f} s\n")
    outcomes = sorted({o for _, o in counts})
    print("| format | " + " | ".join(outcomes) + " |\n|---|" + "---|" * len(outcomes))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(str(counts[(kind, o)]) for o in outcomes) + " |")
    print("\nCLI outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(cli_counts.items())))
    print(f"\ndefects: {len(defects)}")
    for line in defects[:200]:
        print(f"  - {line}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
