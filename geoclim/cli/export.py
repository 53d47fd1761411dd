"""``geoclim-export <run dir>``: a training run -> one parity-checked, self-describing .onnx.

Examples::

    geoclim-export logs/train/runs/2024-05-01_12-00-00_000000
    geoclim-export RUN --quantize                       # + model.int8.onnx, skill and speed
    geoclim-export RUN --register registry/ --name no2_lstm --stage production
    geoclim-export RUN --checkpoint last --atol 1e-5 --out /models/no2.onnx

Networks (LSTM, CNN, TFT) are exported from the checkpoint (``--checkpoint best`` by
default); tree baselines (XGBoost, LightGBM, random forest) are loaded from the run's
``model/`` folder -- the trees that were scored -- and exported with their feature
flattening in the graph. Either way the
export is checked against the original on the run's test batches and the command fails
(exit status 2) when the difference exceeds the tolerance. The report is printed as JSON
and written as ``export.json`` next to the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from geoclim.cli.errors import friendly_errors
from geoclim.cli.help import HelpFormatter
from geoclim.errors import ConfigError
from geoclim.export.parity import DEFAULT_ATOL, DEFAULT_RTOL
from geoclim.training import rundir


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim-export``."""
    p = argparse.ArgumentParser(
        prog="geoclim-export",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("run_dir", type=Path, help="run directory written by geoclim-train")
    p.add_argument("--out", type=Path, help="output .onnx (default RUN/export/model.onnx)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .ckpt path")
    p.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help="parity tolerance, absolute (normalised units; default %(default)g)",
    )
    p.add_argument(
        "--rtol", type=float, default=DEFAULT_RTOL, help="parity tolerance, relative (%(default)g)"
    )
    p.add_argument(
        "--parity-batches",
        type=int,
        default=8,
        help="test batches compared (0: the whole test split)",
    )
    p.add_argument(
        "--quantize",
        action="store_true",
        help="also write an int8 model and measure skill and speed",
    )
    spatial = p.add_mutually_exclusive_group()
    spatial.add_argument(
        "--dynamic-spatial",
        dest="dynamic_spatial",
        action="store_true",
        default=None,
        help="require dynamic grid height and width",
    )
    spatial.add_argument(
        "--fixed-spatial",
        dest="dynamic_spatial",
        action="store_false",
        help="fix the grid height and width",
    )
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    p.add_argument(
        "--register",
        type=Path,
        metavar="REGISTRY",
        help="register the export in this registry directory",
    )
    p.add_argument("--name", help="registry model name (default: the model config name)")
    p.add_argument("--stage", choices=["staging", "production"], default="staging")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _kind(run_dir: Path) -> str:
    model = rundir.read_config(run_dir).model
    kind = model.get("kind")
    if kind == "network":
        return "network"
    if kind == "baseline" and ".trees." in str(model.get("_target_", "")):
        return "tree"
    raise ConfigError(
        f"{run_dir} trained a {kind!r} model ({model.get('_target_')}); "
        "geoclim-export exports networks and tree baselines (xgboost, "
        "lightgbm, random_forest)"
    )


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    """Console entry point (``geoclim-export``)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kind = _kind(args.run_dir)
    if kind == "network":
        from geoclim.export.run import export_run

        report = export_run(
            args.run_dir,
            args.out,
            checkpoint=args.checkpoint,
            atol=args.atol,
            rtol=args.rtol,
            parity_batches=args.parity_batches or None,
            quantize=args.quantize,
            dynamic_spatial=args.dynamic_spatial,
            exporter=args.exporter,
        )
    else:
        from geoclim.export.trees import export_tree_run

        if args.quantize:
            raise ConfigError(
                "--quantize applies to networks; tree ensembles have no weights to quantise"
            )
        report = export_tree_run(args.run_dir, args.out)
    if args.register is not None:
        report["registered"] = _register(args, report)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _register(args: argparse.Namespace, report: dict) -> dict:
    from geoclim.export.onnx import read_metadata
    from geoclim.export.registry import ModelRegistry

    meta = read_metadata(report["model"])
    name = args.name or _default_name(meta.config, meta.task.targets)
    mv = ModelRegistry(args.register).register(
        name,
        report["model"],
        run_dir=args.run_dir.resolve(),
        data_fingerprint=meta.data_fingerprint,
        scores=meta.scores,
        config=meta.config,
        stage=args.stage,
    )
    return {
        "registry": str(args.register),
        "name": mv.name,
        "version": mv.version,
        "stage": mv.stage,
    }


def _default_name(config: dict, targets: tuple[str, ...]) -> str:
    model = config.get("model", {})
    target = str(model.get("net", model).get("_target_", "model")).rsplit(".", 1)[-1].lower()
    return f"{'_'.join(targets)}_{target}"


if __name__ == "__main__":
    raise SystemExit(main())
