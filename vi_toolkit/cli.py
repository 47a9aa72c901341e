"""The ``vi-toolkit`` command: list, run, demo, report. Bad input prints one line and exits 2."""

import argparse
import os
import sys
import warnings

from .errors import VIToolkitError

RUNS_ROOT = "runs"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise VIToolkitError(f"{message} (see 'vi-toolkit --help')")


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**32), got {value}")
    return value


class _RunHelp(argparse.Action):
    """``run NAME --help``: the usual help, then every setting of experiment NAME (type, default, one line)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        name = getattr(namespace, "experiment", None)
        registry = _experiments()
        experiment = registry.get(name) if name else None  # an unknown name: one line, exit 2
        parser.print_help()
        if experiment is not None:
            print("\n" + experiment.settings_text())
        else:
            print("\nexperiments: " + ", ".join(registry.available())
                  + "\n'vi-toolkit run NAME --help' lists the settings of NAME; lists are comma-separated, "
                  "e.g. --set guides=normal,mvn")
        parser.exit()


def _experiments():
    from vi_toolkit import experiments  # the CLI is the one module that reaches the experiments

    return experiments


def cmd_list(args):
    from vi_toolkit import models

    print("models:")
    for name, text in models.describe().items():
        print(f"  {name:<20} {text}")
    print("experiments:")
    for name, text in _experiments().describe().items():
        print(f"  {name:<20} {text}")
    return 0


def _finish(folder):
    from .report import build_report

    report = build_report(folder.path)
    print(f"run folder: {folder.path}\nreport: {report}")
    return 0


def _run_into(folder, work):
    """Run ``work()`` into ``folder``, recording in run.json whether it completed (and why not)."""
    try:
        work()
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        folder.finish(error=" ".join(reason.split())[:500])
        raise
    folder.finish()


def cmd_run(args):
    from .experiment import build_config, parse_assignments, read_config_file, run_experiment
    from .run_folder import RunFolder

    experiment = _experiments().get(args.experiment)
    overrides = read_config_file(args.config) if args.config else {}
    overrides.update(parse_assignments(args.set))
    config = build_config(experiment, overrides=overrides)  # the whole configuration is checked first
    meta = {"command": "run", "experiment": experiment.name, "seed": args.seed}
    folder = RunFolder.create(args.out, meta=meta) if args.out else RunFolder.new(RUNS_ROOT, experiment.name, meta=meta)
    record = {}
    _run_into(folder, lambda: record.update(run_experiment(experiment, config, folder, args.seed)))
    print(f"{experiment.name}: {record['seconds']:.1f} s. {record['summary']}", flush=True)
    return _finish(folder)


def cmd_demo(args):
    from .experiment import build_config, run_experiment
    from .run_folder import RunFolder

    registry = _experiments()
    configs = {name: build_config(registry.get(name), demo=True) for name in registry.available()}
    meta = {"command": "demo", "seed": args.seed, "experiments": list(configs)}
    folder = RunFolder.create(args.out, meta=meta) if args.out else RunFolder.new(RUNS_ROOT, "demo", meta=meta)

    def work():
        for name, config in configs.items():
            experiment = registry.get(name)
            print(f"== {name}: {experiment.description}", flush=True)
            record = run_experiment(experiment, config, folder.sub(name), args.seed)
            print(f"   {record['seconds']:.1f} s. {record['summary']}", flush=True)

    _run_into(folder, work)
    return _finish(folder)


def cmd_report(args):
    from .report import build_report

    print(build_report(args.run_dir))
    return 0


def cmd_sweep(args):
    from .sweep import sweep  # dask and torch load here, not when the CLI starts

    result = sweep(args.sweep_file, out=args.out, workers=args.workers, scheduler=args.scheduler)
    print(f"sweep folder: {result.folder}\nreport: {result.report}")
    if result.all_failed:
        raise VIToolkitError(f"every one of the {result.trials} trials failed; see {result.folder / 'trials.csv'}")
    if result.failed:
        print(f"note: {result.failed} of {result.trials} trials failed; see {result.folder / 'trials.csv'}")
    return 0


def build_parser():
    parser = _Parser(prog="vi-toolkit", description="Variational inference with Pyro, compared with MCMC.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="list models and experiments").set_defaults(handler=cmd_list)
    run = commands.add_parser("run", help="run one experiment", add_help=False)
    run.add_argument("-h", "--help", action=_RunHelp, help="show this help and the experiment's settings, then exit")
    run.add_argument("experiment", help="an experiment name (see 'vi-toolkit list')")
    run.add_argument("--config", help="TOML or JSON file of settings")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    run.add_argument("--out", help="run folder to create (must not exist)")
    run.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number in [0, 2**32)")
    run.set_defaults(handler=cmd_run)
    demo = commands.add_parser("demo", help="every experiment at a small size, one run folder, one report")
    demo.add_argument("--out", help="run folder to create (must not exist)")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number in [0, 2**32)")
    demo.set_defaults(handler=cmd_demo)
    report = commands.add_parser("report", help="(re)build report.html of a run folder")
    report.add_argument("run_dir")
    report.set_defaults(handler=cmd_report)
    sweep = commands.add_parser("sweep", help="one experiment over a grid of settings and seeds, on Dask")
    sweep.add_argument("sweep_file", help="TOML or JSON sweep file: experiment, [settings], [grid], seeds, [[trials]]")
    sweep.add_argument("--out", help="sweep folder (default sweeps/<name>); an earlier one is resumed")
    engine = sweep.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the cores; 0: none)")
    engine.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    sweep.set_defaults(handler=cmd_sweep)
    return parser


def main(argv=None):
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except VIToolkitError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        print("vi-toolkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (vi-toolkit list | head -1): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a permission: the system's words, one line
        return _fail(f"{exc.strerror or exc} ({exc.filename or 'while writing'}); the run folder is marked incomplete", 1)
    except Exception as exc:  # noqa: BLE001 - never a traceback: one line, and the run is marked incomplete
        return _fail(f"internal error, please report it: {type(exc).__name__}: {exc}", 1)


def _fail(message, code):
    print(f"vi-toolkit: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
