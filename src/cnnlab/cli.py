"""The `cnnlab` command: parse arguments, call the library, print. No logic of its own.

Errors the user can fix (CnnlabError) print as one line `error: ...` and exit with status 2; a
traceback only with --debug. Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

from cnnlab import __version__
from cnnlab.cli_args import add_train_flags, at_least, attach_matrix_values, choices, shape_type, unrecognized
from cnnlab.errors import CnnlabError, ConfigError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def _train_flags_given(args: argparse.Namespace) -> dict:
    """The TrainConfig flags given on the command line, by field name."""
    from cnnlab.train.config import TrainConfig

    names = [row[0] for row in TrainConfig.fields_for_cli()]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def train_config(args: argparse.Namespace):
    """Defaults < recipe < --config file < flags: the resolved TrainConfig."""
    from cnnlab.api import resolve_config
    from cnnlab.train.config import TrainConfig, read_settings

    flags = _train_flags_given(args)
    # only the settings the file names, so that it overrides the recipe and flags override it
    from_file = TrainConfig.normalize(read_settings(args.config), source=args.config) if args.config else {}
    return resolve_config({**from_file, **flags}, source="the command line")


def cmd_train(args) -> int:
    from cnnlab import console, pipeline

    if args.resume:
        others = [f"--{name.replace('_', '-')}" for name in _train_flags_given(args) if name != "epochs"]
        if args.config:
            others.insert(0, "--config")
        if others:
            raise ConfigError(f"--resume continues a run with its own settings, so {', '.join(others)} "
                              f"cannot change it; drop {'it' if len(others) == 1 else 'them'} (only "
                              "--epochs may be given), or start a new run without --resume")
        with console.Progress(epochs=args.epochs or 0, quiet=args.quiet) as progress:
            result = pipeline.resume(args.resume, callbacks=[progress], epochs=args.epochs)
    else:
        cfg = train_config(args)
        bar = console.download_bar(f"downloading {cfg.data}", args.quiet)
        try:
            with console.Progress(epochs=cfg.epochs, quiet=args.quiet) as progress:
                result = pipeline.train(cfg, callbacks=[progress], on_download=bar)
        finally:
            if bar is not None:
                bar.close()
    m = result.metrics
    if "member_results" in m:  # an ensemble: each member, their mean, and the combined models
        from cnnlab.ensemble import format_table

        print(format_table(m))
    print(f"test accuracy {m['test_accuracy']:.4f}  test loss {m['test_loss']:.4f}  ({m['n_test']} images)")
    print(f"run saved in {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from cnnlab.predict import RUN_TTA, evaluate_run, evaluation_dir

    m = evaluate_run(args.run, data=args.data, data_dir=args.data_dir, tta=args.tta or RUN_TTA)
    print(f"test accuracy {m['test_accuracy']:.4f}  test loss {m['test_loss']:.4f}  ({m['n_test']} images)")
    for row in m.get("most_confused", [])[:3]:
        print(f"  most confused: {row['true']} -> {row['pred']} ({row['count']}x)")
    print(f"pictures and metrics.json in {evaluation_dir(args.run, args.data)}")
    return 0


def cmd_predict(args) -> int:
    from cnnlab.predict import predict_images

    for path, top in predict_images(args.run, args.images, top_k=args.top_k):
        ranked = "  ".join(f"{name} {p:.3f}" for name, p in top)
        print(f"{path}: {ranked}")
    return 0


def cmd_summary(args) -> int:
    from cnnlab.predict import summarize_model

    summary = summarize_model(args.model, input_shape=args.input, num_classes=args.classes)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary)
    return 0


def cmd_models(args) -> int:
    from cnnlab import zoo

    rows = [(m.name, f"{m.parameters:,}", "x".join(map(str, m.input_shape)), m.origin) for m in zoo.list_models()]
    header = ("model", "params", "input", "origin")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    for r in [header, *rows]:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print("params: with 10 classes, as torch counts them; `cnnlab summary MODEL` also counts "
          "BatchNorm's moving statistics, as Keras does")
    return 0


def cmd_explain(args) -> int:
    from cnnlab import lesson

    # options of the other walk-through are refused, not dropped without a word
    foreign = (["--pool-size", "--mode"] if args.what == "conv" else ["--kernel"])
    given = [flag for flag in foreign if getattr(args, flag[2:].replace("-", "_")) is not None]
    if given:
        raise ConfigError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to "
                          f"`cnnlab explain {args.what}`; leave {'it' if len(given) == 1 else 'them'} out")
    matrix = lesson.parse_matrix(args.input) if args.input is not None else None
    padding = int(args.padding) if args.padding.isdigit() else args.padding
    if args.what == "conv":
        print(lesson.explain_conv(matrix, lesson.parse_matrix(args.kernel) if args.kernel else None,
                                  stride=1 if args.stride is None else args.stride, padding=padding))
    else:
        print(lesson.explain_pool(matrix, pool_size=args.pool_size or 2, stride=args.stride,
                                  mode=args.mode or "max", padding=padding))
    return 0


def cmd_inspect(args) -> int:
    from cnnlab.predict import inspect_run

    result = inspect_run(args.run, args.image, layers=args.layer, out=args.out, class_index=args.class_index)
    for name, p in result["topk"]:
        print(f"{name}: {p:.3f}")
    for path in result["paths"]:
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from cnnlab.predict import report_run

    print(f"wrote {report_run(args.run, data=args.data, data_dir=args.data_dir, examples=args.examples)}")
    return 0


def cmd_ensemble(args) -> int:
    from cnnlab.ensemble_run import combine_runs

    report, table = combine_runs(args.runs, data=args.data, data_dir=args.data_dir, out=args.out)
    print(table)
    return 0


def cmd_lr_find(args) -> int:
    from cnnlab.ensemble_run import lr_find

    result, png = lr_find(train_config(args), out=args.plot)
    if result.suggestion is None:
        print(f"no learning rate to suggest  (plot: {png})")
    else:
        print(f"suggested learning rate {result.suggestion:.2e}  (plot: {png})")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_bench(args) -> int:
    from cnnlab.bench import run_bench

    run_bench(device=args.device, runs=args.runs, which=args.which, full=args.full, data_dir=args.data_dir,
              batches=args.batches, threads=args.threads, recipes=args.recipe or ("fast", "best"),
              first_seed=args.first_seed,
              on_result=lambda row: print(json.dumps(row), flush=True),
              on_progress=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # --debug and --quiet work before or after the subcommand (cnnlab --quiet train / cnnlab train --quiet)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    parser = argparse.ArgumentParser(prog="cnnlab", parents=[common],
                                     description="CNNs for image classification, as the lectures teach them.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        extra = {"description": description} if description else {}
        return sub.add_parser(name, help=help, parents=[common], **extra)

    p = command("train", help="train a model and write a run directory")
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its checkpoint")
    add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = command("evaluate", help="test loss/accuracy, confusion matrix and top losses of a run")
    p.add_argument("run")
    p.add_argument("--data", help="evaluate on this dataset instead of the run's own")
    p.add_argument("--data-dir")
    p.add_argument("--tta", choices=["none", "flip", "flip-translate"],
                   help="test-time augmentation (default: the run's own setting)")
    p.set_defaults(func=cmd_evaluate)

    p = command("predict", help="top classes with probabilities for image files")
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=at_least(1), default=3, help="how many classes to list per image")
    p.set_defaults(func=cmd_predict)

    p = command("summary", help="layer table with output shapes and the arithmetic behind them")
    p.add_argument("model", help="zoo name, model YAML/JSON file, or run directory")
    p.add_argument("--input", type=shape_type, help="input shape CxHxW, e.g. 1x28x28")
    p.add_argument("--classes", type=at_least(2), default=None,
                   help="output classes for a zoo model (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_summary)

    p = command("models", help="list the model zoo")
    p.set_defaults(func=cmd_models)

    p = command("explain", help="the sliding-window computation step by step")
    p.add_argument("what", choices=["conv", "pool"])
    p.add_argument("--input", help="matrix rows separated by ';', e.g. '0,1,7,5;5,5,6,6;5,3,3,0;1,1,1,2'")
    p.add_argument("--kernel", help="conv filter, same format")
    p.add_argument("--stride", type=at_least(1), default=None)
    p.add_argument("--padding", default="valid", help="valid, same, or (conv) a number of pixels")
    p.add_argument("--pool-size", type=at_least(1), default=None, help="pool: window size (default 2)")
    p.add_argument("--mode", choices=["max", "avg", "min"], default=None, help="pool: max (default), avg or min")
    p.set_defaults(func=cmd_explain)

    p = command("inspect", help="feature maps, filters and Grad-CAM of a run on one image")
    p.add_argument("run")
    p.add_argument("image")
    p.add_argument("--layer", action="append", help="a layer name (repeatable); default: every convolution")
    p.add_argument("--class", dest="class_index", type=int, help="Grad-CAM for this class index (default: predicted)")
    p.add_argument("--out", help="folder for the PNGs (default RUN/inspect/<image>)")
    p.set_defaults(func=cmd_inspect)

    p = command("report", help="(re)write RUN/report.html")
    p.add_argument("run")
    p.add_argument("--data", help="take the example images from this dataset instead of the run's own")
    p.add_argument("--data-dir")
    p.add_argument("--examples", type=at_least(0), default=4, help="test images shown with feature maps and Grad-CAM")
    p.set_defaults(func=cmd_report)

    p = command("ensemble", help="combine finished runs by averaging probabilities and by vote")
    p.add_argument("runs", nargs="+")
    p.add_argument("--data")
    p.add_argument("--data-dir")
    p.add_argument("--out", help="write the ensemble's metrics.json into this folder")
    p.set_defaults(func=cmd_ensemble)

    from cnnlab.train.config import LR_FIND_SETTINGS

    p = command("lr-find", help="learning-rate range test: plot and suggested value",
                description="Learning-rate range test. It takes the settings below, from flags or "
                            "--config; a config file's other settings (epochs, schedule, ...) play "
                            "no part in it.")
    p.add_argument("--config")
    p.add_argument("--plot", default="lr-find.png", help="where to write the plot")
    add_train_flags(p, only=LR_FIND_SETTINGS)  # the settings lr_find uses
    p.set_defaults(func=cmd_lr_find)

    p = command("bench", help="speed measurements as JSON lines",
                description="Speed measurements, one JSON line each on stdout (progress on stderr); "
                            "docs/speed.md explains each and lists the figures measured so far.")
    p.add_argument("--device", default="auto",
                   help="where time-to-accuracy and gpu-recipe train: auto (cuda, then mps, then cpu), cpu "
                        "or cuda; cpu-epoch always measures the CPU, and gpu-recipe needs cuda (else it "
                        "prints a 'skipped' line)")
    p.add_argument("--runs", type=at_least(1), default=3,
                   help="cpu-epoch: rounds of the three settings; time-to-accuracy and gpu-recipe: seeds")
    p.add_argument("--first-seed", type=int, default=0,
                   help="time-to-accuracy and gpu-recipe run seeds first-seed .. first-seed + runs - 1 "
                        "(continue a series across sittings)")
    p.add_argument("--which", action="extend", type=choices("cpu-epoch", "time-to-accuracy", "gpu-recipe"),
                   help="which measurements: cpu-epoch, time-to-accuracy, gpu-recipe (repeatable or "
                        "comma-separated; default all)")
    p.add_argument("--full", action="store_true", help="time whole epochs instead of a fixed number of batches")
    p.add_argument("--batches", type=int, default=150, help="batches timed per epoch measurement (without --full)")
    p.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: one per usable core)")
    p.add_argument("--recipe", action="extend", type=choices("fast", "best"),
                   help="gpu-recipe: which recipe to measure, fast or best (repeatable or comma-separated; "
                        "default both)")
    p.add_argument("--data-dir", help="folder holding Fashion-MNIST (else the usual places); without the "
                                      "full set the bench measures the embedded mini set and says so in "
                                      "each line's 'data'")
    p.set_defaults(func=cmd_bench)
    return parser


def _is_interruption(error: CnnlabError) -> bool:
    """Whether error is the Trainer's TrainingInterrupted (without importing torch to ask)."""
    engine = sys.modules.get("cnnlab.train.engine")
    return engine is not None and isinstance(error, engine.TrainingInterrupted)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(attach_matrix_values(sys.argv[1:] if argv is None else list(argv)))
    if extra:  # said by the subcommand's parser, whose usage lists the options it has
        unrecognized(parser, getattr(args, "command", None), extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    args.debug, args.quiet = getattr(args, "debug", False), getattr(args, "quiet", False)
    if not args.debug:  # a ShapeWarning reads as one line, like errors, not as a source listing
        warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except CnnlabError as e:
        if _is_interruption(e):  # Ctrl-C with the state saved: the resume hint, and Ctrl-C's code
            print(f"interrupted: {e}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`cnnlab summary resnet152 | head -1`): stop quietly, and point
        # stdout at devnull so Python's exit flush does not fail again (Python docs, "SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
