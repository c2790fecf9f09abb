"""The ``pyjac`` command: ``pyjac reproduce``, ``sweep``, ``plot`` and ``diagnose``.

Run ``pyjac --help`` or ``pyjac COMMAND --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import save_figure
from ._validation import check_allocation

PLOT_KINDS = ("gradient_vs_depth", "gradient_flow", "per_layer", "phase_diagram",
              "rnn_gradient_vs_time", "singular_value_spectra")
FORMATS = ("png", "svg", "pdf")


class _CLIError(Exception):
    """A user error: printed as ``pyjac CMD: error: message``, exit status 2."""


# --------------------------------------------------------------------------------------
# Argument parsing helpers
# --------------------------------------------------------------------------------------
# A range option expands to at most this many values: a sweep of more configurations
# than this is a typo (1:2000000000:1), not a plan.
_MAX_VALUES = 10_000


def _floats(text: str) -> list[float]:
    """"1.5", or "a:b:n" for n evenly spaced values from a to b inclusive."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            count = int(n)
            if count < 1:
                raise ValueError
            if count > _MAX_VALUES:
                raise argparse.ArgumentTypeError(
                    f"{text!r} asks for {count} values; at most {_MAX_VALUES} per option")
            return [float(v) for v in np.linspace(float(a), float(b), count)]
        return [float(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or START:STOP:COUNT, got {text!r}") from None


def _ints(text: str) -> list[int]:
    """"50", or "a:b:step" for a, a+step, ... up to b inclusive."""
    try:
        if ":" in text:
            a, b, step = (int(v) for v in text.split(":"))
            if step < 1:
                raise ValueError
            count = len(range(a, b + 1, step))  # computed, not built
            if count > _MAX_VALUES:
                raise argparse.ArgumentTypeError(
                    f"{text!r} asks for {count} values; at most {_MAX_VALUES} per option")
            return list(range(a, b + 1, step))
        return [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or START:STOP:STEP, got {text!r}") from None


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flatten(values: Sequence[list[Any]] | None) -> list[Any] | None:
    if values is None:
        return None
    return [v for group in values for v in group]


def _scalar(text: str) -> Any:
    """A --select value: int, float, bool, "none" or a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _writable_dir(path: str, flag: str = "--out") -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".pyjac-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _CLIError(f"{flag}: cannot write to {str(out)!r} "
                        f"({exc.strerror or exc})") from None
    return out


def _cache_arg(args: argparse.Namespace) -> Any:
    if args.no_cache:
        return False
    return args.cache_dir if args.cache_dir else True


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where finished runs are cached (default: $PYJAC_CACHE_DIR, else "
                        "~/.cache/pyjac)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything, store nothing")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run configurations in N processes (default: one process, every "
                        "core inside each backprop; -1: one process per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://host:8786 (needs "
                        "pip install 'pyjac[distributed]'); not with --jobs")


@contextlib.contextmanager
def _scheduler_arg(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for --scheduler, connected once for the whole command (or None)."""
    address = getattr(args, "scheduler", None)
    if address is None:
        yield None
        return
    from .experiments.distributed import check_scheduler, client_for

    if args.jobs is not None:
        raise _CLIError("--jobs: not used with --scheduler (the cluster's workers set the "
                        "parallelism)")
    check_scheduler(address, argument="--scheduler")
    with client_for(address, argument="--scheduler") as client:
        yield client


def _matplotlib_agg() -> None:
    try:
        import matplotlib
    except ImportError:
        raise _CLIError("needs matplotlib: pip install 'pyjac[plot]'") from None
    matplotlib.use("Agg")


# --------------------------------------------------------------------------------------
# pyjac reproduce
# --------------------------------------------------------------------------------------
def _cmd_reproduce(args: argparse.Namespace) -> int:
    from . import figures
    from .figures import report

    _matplotlib_agg()
    import matplotlib.pyplot as plt

    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise _CLIError(f"--formats: expected a comma-separated list of {', '.join(FORMATS)}, "
                        f"got {args.formats!r}")
    names = [s.name for s in figures.FIGURES]
    only = None
    if args.only:
        only = [n.strip() for n in args.only.split(",") if n.strip()]
        for n in only:
            if not any(n == s.name or s.name.startswith(n + "_") for s in figures.FIGURES):
                raise _CLIError(f"--only: unknown figure {n!r}; choose from "
                                f"{', '.join(names)} (or fig1 ... fig{len(names)})")
    out = _writable_dir(args.out)  # created only once the arguments are known to be good
    cache = _cache_arg(args)
    progress = False if args.no_progress else None
    start = time.perf_counter()
    drawn, skipped, failed = [], [], []
    specs = [s for s in figures.FIGURES
             if only is None or any(n == s.name or s.name.startswith(n + "_") for n in only)]
    with _scheduler_arg(args) as scheduler:
        for k, spec in enumerate(specs):
            reason = figures.available(spec)
            if reason is not None:
                skipped.append((spec.name, spec.title, reason))
                print(f"[{k + 1}/{len(specs)}] {spec.name}: skipped ({reason})", flush=True)
                continue
            t0 = time.perf_counter()
            if scheduler is not None and not spec.sweep:
                print(f"[{k + 1}/{len(specs)}] {spec.name}: runs on this machine (its runs are "
                      "not sweep tasks; --scheduler sends those of figures 1-8)", flush=True)
            if not sys.stdout.isatty():  # a log gets a line when each figure starts, too
                print(f"[{k + 1}/{len(specs)}] {spec.name}: drawing ...", flush=True)
            try:
                fig, info = spec.build(quick=args.quick, cache=cache, n_jobs=args.jobs,
                                       progress=progress, scheduler=scheduler)
            except Exception as exc:  # one broken figure must not lose the others
                failed.append((spec.name, spec.title, f"failed: {type(exc).__name__}: {exc}"))
                print(f"[{k + 1}/{len(specs)}] {spec.name}: FAILED ({type(exc).__name__}: {exc})",
                      file=sys.stderr, flush=True)
                continue
            files = []
            try:
                for fmt in formats:
                    name = f"{spec.name}.{fmt}"
                    save_figure(fig, out / name, dpi=args.dpi if fmt == "png" else None)
                    files.append(name)
            except OSError as exc:
                raise _CLIError(f"--out: cannot write to {str(out)!r} ({exc.strerror or exc})"
                                ) from None
            finally:
                plt.close(fig)
            drawn.append((info, files))
            print(f"[{k + 1}/{len(specs)}] {spec.name}: {time.perf_counter() - t0:.1f} s -> "
                  f"{', '.join(str(out / f) for f in files)}", flush=True)
    t0 = time.perf_counter()
    claims = report.seed_claims(quick=args.quick)
    print(f"checked {len(claims)} numbers from the texts "
          f"({sum(c.wrong for c in claims)} wrong) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    path = report.write_report(out / "report.md", drawn, skipped + failed, claims,
                               quick=args.quick, seconds=time.perf_counter() - start)
    print(f"wrote {path} ({len(drawn)} figures, {len(skipped)} skipped, {len(failed)} failed) "
          f"in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------
# pyjac sweep
# --------------------------------------------------------------------------------------
def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import sweep

    out = Path(args.out)
    if out.parent and not out.parent.exists():
        _writable_dir(str(out.parent))
    kwargs: dict[str, Any] = {}
    for name in ("activation", "init", "gain", "sigma_w2", "sigma_b2", "depth", "width",
                 "residual", "residual_scale", "norm", "batch", "input_scale", "loss",
                 "dtype"):
        value = getattr(args, name)
        if value is None:
            continue
        value = _flatten(value) if value and isinstance(value[0], list) else value
        if name == "norm":
            value = [None if v == "none" else v for v in value]
        kwargs[name] = value if len(value) > 1 else value[0]
    seeds = args.seeds if args.seeds is not None else 1
    start = time.perf_counter()
    with _scheduler_arg(args) as scheduler:
        res = sweep(**kwargs, seeds=seeds, theory=not args.no_theory, n_jobs=args.jobs,
                    cache=_cache_arg(args), progress=False if args.no_progress else None,
                    scheduler=scheduler)
    try:
        path = res.save(out, format=args.format)
    except OSError as exc:
        raise _CLIError(f"--out: {exc}") from None
    meta = res.meta
    print(f"wrote {path}: {len(res)} rows, {meta['n_configs']} configs x "
          f"{len(meta['seeds'])} seeds ({meta['computed_runs']} runs computed, "
          f"{meta['cached_runs']} from the cache) in {time.perf_counter() - start:.1f} s")
    return 0


# --------------------------------------------------------------------------------------
# pyjac plot
# --------------------------------------------------------------------------------------
def _cmd_plot(args: argparse.Namespace) -> int:
    from . import plot
    from .experiments import Results

    _matplotlib_agg()
    import matplotlib.pyplot as plt

    try:
        res = Results.load(args.results)
    except FileNotFoundError:
        raise _CLIError(f"RESULTS: no such file {args.results!r}") from None
    except (ValueError, ImportError) as exc:
        raise _CLIError(f"RESULTS: {exc}") from None
    conditions = {}
    for item in args.select or []:
        if "=" not in item:
            raise _CLIError(f"--select: expected COLUMN=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        conditions.setdefault(key.strip(), []).append(_scalar(value))
    if conditions:
        try:
            res = res.select(**conditions)
        except KeyError as exc:
            raise _CLIError(f"--select: {exc.args[0]}") from None
        if len(res) == 0:
            raise _CLIError(f"--select: no rows match {args.select}")
    out = Path(args.out) if args.out else Path(args.results).with_name(
        Path(args.results).stem + f"_{args.kind}.png")
    _writable_dir(str(out.parent) if str(out.parent) else ".", "--out")
    by = args.by.split(",") if args.by else None
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    kind = args.kind
    if kind == "gradient_vs_depth":
        plot.gradient_vs_depth(res, ax=ax, by=by, theory=not args.no_theory,
                               value=args.value or "grad_norm")
    elif kind == "per_layer":
        plot.per_layer(res, args.value or "grad_norm", ax=ax, by=by, log=not args.linear)
    elif kind == "gradient_flow":
        plot.gradient_flow(res, ax=ax, by=by, value=args.value or "weight_grad_norm")
    elif kind == "phase_diagram":
        plot.phase_diagram(res, ax=ax)
    elif kind == "rnn_gradient_vs_time":
        plot.rnn_gradient_vs_time(res, ax=ax)
    else:
        plot.singular_value_spectra(res, ax=ax)
    if args.title:
        ax.set_title(args.title)
    try:
        save_figure(fig, out, dpi=args.dpi)
    except OSError as exc:
        raise _CLIError(f"--out: cannot write {str(out)!r} ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------------------
# pyjac diagnose
# --------------------------------------------------------------------------------------
def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnose import as_chain, diagnose

    if not os.path.isfile(args.file):
        raise _CLIError(f"FILE: no such file {args.file!r}")
    if args.batch < 1:
        raise _CLIError(f"--batch: must be at least 1, got {args.batch}")
    if args.seed < 0:
        raise _CLIError(f"--seed: must be non-negative, got {args.seed}")
    activation = None
    if args.activation:
        activation = args.activation[0] if len(args.activation) == 1 else args.activation
    try:
        net = as_chain(args.file, activation)
    except (ValueError, TypeError, MemoryError) as exc:
        msg = str(exc)
        for api, flag in (("model_or_weights", "FILE"), ("activation", "--activation")):
            if msg.startswith(api):
                msg = flag + msg[len(api):]
        raise _CLIError(msg) from None
    try:
        check_allocation(8 * args.batch * net.widths[0], f"--batch: {args.batch} inputs")
    except MemoryError as exc:
        raise _CLIError(str(exc)) from None
    x = np.random.default_rng(args.seed).standard_normal((args.batch, net.widths[0]))
    print(diagnose(net, x, suggest=not args.no_suggest))
    return 0


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``pyjac`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pyjac",
        description="Exact measurements of vanishing and exploding gradients: reproduce "
                    "the depth-vs-gradient figures, run sweeps, draw them, diagnose a "
                    "saved network.",
        epilog="Start with: pyjac reproduce --out figures/",
    )
    parser.add_argument("--version", action="version", version=f"pyjac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "reproduce", help="draw every figure and write report.md",
        description="Draw every depth-vs-gradient figure (PNG and SVG) and write report.md: "
                    "each figure with its caption and measured numbers, and a table that "
                    "checks every number in the seed texts against pyjac's measurements.",
        epilog="Example: pyjac reproduce --out figures/ --quick")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--quick", action="store_true",
                   help="smaller widths, depths, grids and seeds (under 2 minutes on 2 cores)")
    p.add_argument("--only", metavar="NAMES",
                   help="comma-separated figures to draw, e.g. fig1,fig6 (report covers "
                        "those only)")
    p.add_argument("--formats", default="png,svg", metavar="LIST",
                   help="comma-separated image formats among png, svg, pdf (default png,svg)")
    p.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")
    _add_run_options(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "sweep", help="measure per-layer gradients over a grid, write a Results file",
        description="Run Chain.backprop over the Cartesian product of the values given "
                    "(every option takes one or more values) and write the tidy Results "
                    "table (Parquet when pyarrow is installed, else npz). Numbers accept "
                    "START:STOP:COUNT (floats, evenly spaced) or START:STOP:STEP (integers).",
        epilog="Example: pyjac sweep --activation tanh --sigma-w2 0.5:4:8 "
               "--sigma-b2 0 0.1 --depth 30 --seeds 2 --out phase.npz")
    p.add_argument("--out", required=True, metavar="PATH", help="Results file to write")
    p.add_argument("--format", choices=("parquet", "npz"), default=None,
                   help="file format (default: from the suffix, else parquet if available)")
    p.add_argument("--activation", nargs="+", metavar="NAME",
                   help="linear sigmoid tanh relu leaky_relu gelu silu (default relu)")
    p.add_argument("--init", nargs="+", metavar="NAME",
                   help="gaussian xavier xavier_uniform he orthogonal identity (default he)")
    p.add_argument("--gain", nargs="+", type=_floats, metavar="X")
    p.add_argument("--sigma-w2", dest="sigma_w2", nargs="+", type=_floats, metavar="X",
                   help="weight variance x fan-in (sets init gaussian, gain sqrt(X))")
    p.add_argument("--sigma-b2", dest="sigma_b2", nargs="+", type=_floats, metavar="X",
                   help="bias variance (default 0)")
    p.add_argument("--depth", nargs="+", type=_ints, metavar="N", help="layers (default 50)")
    p.add_argument("--width", nargs="+", type=_ints, metavar="N", help="units (default 128)")
    p.add_argument("--residual", nargs="+", type=_bool, metavar="BOOL")
    p.add_argument("--residual-scale", dest="residual_scale", nargs="+", type=_floats,
                   metavar="X")
    p.add_argument("--norm", nargs="+", choices=("none", "layernorm", "batchnorm"))
    p.add_argument("--batch", nargs="+", type=_ints, metavar="N", help="default 16")
    p.add_argument("--input-scale", dest="input_scale", nargs="+", type=_floats, metavar="X")
    p.add_argument("--loss", nargs="+", choices=("random", "sum_squares"),
                   help="random: Gaussian dL/dh_L (default); sum_squares: 0.5||h_L||^2")
    p.add_argument("--dtype", nargs="+", choices=("float32", "float64"))
    p.add_argument("--seeds", type=int, metavar="N", help="number of seeds (default 1)")
    p.add_argument("--no-theory", action="store_true", help="skip the mean-field column")
    _add_run_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "plot", help="draw a Results file",
        description="Draw a Results file written by 'pyjac sweep' (or Results.save).",
        epilog="Example: pyjac plot phase.npz --kind phase_diagram --out phase.png")
    p.add_argument("results", metavar="RESULTS", help="a Results file (.npz or .parquet)")
    p.add_argument("--kind", required=True, choices=PLOT_KINDS, help="what to draw")
    p.add_argument("--out", metavar="PATH",
                   help="image file (default RESULTS_KIND.png next to RESULTS)")
    p.add_argument("--value", metavar="COLUMN",
                   help="column for gradient_vs_depth, per_layer and gradient_flow")
    p.add_argument("--by", metavar="COLS",
                   help="comma-separated columns that make the lines (default: those "
                        "that vary)")
    p.add_argument("--select", action="append", metavar="COLUMN=VALUE",
                   help="keep rows where COLUMN equals VALUE (repeat to combine)")
    p.add_argument("--no-theory", action="store_true", help="no mean-field lines")
    p.add_argument("--linear", action="store_true", help="linear y axis (per_layer)")
    p.add_argument("--title", help="axes title")
    p.add_argument("--dpi", type=int, default=110)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "diagnose", help="per-layer verdict (vanishing/exploding/healthy) of a saved network",
        description="Run one exact forward and backward pass through the network saved in "
                    "FILE (arrays W0, b0, W1, b1, ... of shape (out, in); optional "
                    "'activations', 'norm', 'residual'; see pyjac.diagnose), on a seeded "
                    "standard normal batch, and print each layer's gradient norms, verdict "
                    "and the fixes pyjac measured to help.",
        epilog="Example: pyjac diagnose weights.npz --activation relu --batch 32")
    p.add_argument("file", metavar="FILE", help="an .npz of weights")
    p.add_argument("--activation", nargs="+", metavar="NAME",
                   help="one name for every layer or one per layer (default: the file's "
                        "'activations' array)")
    p.add_argument("--batch", type=int, default=32, metavar="N", help="inputs (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--no-suggest", action="store_true", help="verdicts only, no fixes")
    p.set_defaults(func=_cmd_diagnose)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyjac`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _CLIError as exc:
        print(f"pyjac {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ImportError, KeyError, MemoryError, ConnectionError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"pyjac {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pyjac {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
