"""``isovox-train CONFIG``: train one shipped model from its JSON config, resumably."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isovox.models import models_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isovox-train", description=__doc__)
    parser.add_argument("config", help="training/configs/<model>.json")
    parser.add_argument("--out", help="run folder for checkpoints and logs (default runs/<name>)")
    parser.add_argument("--export", help="models folder to write the trained model into (default: the package's)")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    parser.add_argument("--no-export", action="store_true", help="train only; do not write the model folder")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    if args.steps:
        config["steps"] = args.steps
    out = Path(args.out or Path("runs") / config["name"])
    if config.get("kind") == "ctguided":  # three stages on unpaired LR MR and HR CT
        from .ctguided import CTGuidedTrainer

        trainer = CTGuidedTrainer(config, out)
    else:
        from .loop import Trainer

        trainer = Trainer(config, out)
    result = trainer.run(args.minutes, args.quiet)
    print(json.dumps({"step": result["step"], "finished": result["finished"], "validation_gain_db": result["validation"]}))
    if result["finished"] and not args.no_export:
        folder = trainer.export(Path(args.export) if args.export else models_root(), result["validation"])
        print(f"exported {folder}")
    elif not result["finished"]:
        print("stopped early; run the same command again to resume", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
