"""The ``gsm3-ops`` command line: parse, load the configuration, call one function of ``ops/``
(or ``evaluation/``), format what it returns.

Every :class:`~gsm3_ops.errors.Gsm3Error` is caught once, here (:func:`_user_errors`): one
line on stderr and its exit status, 2 for usage or configuration, 1 for a failed day,
source or stage. Nothing is written before the inputs are validated.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from gsm3_ops.config import Settings, load_settings
from gsm3_ops.cpus import limit_threads
from gsm3_ops.errors import DayFailedError, Gsm3Error, UsageError
from gsm3_ops.logs import setup_logging
from gsm3_ops.secrets import load_secret_files, redact

app = typer.Typer(
    help="gsm3-ops: daily 9 km surface soil moisture from the GSM3 multitask LSTM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold credentials
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML configuration (default: $GSM3_CONFIG).")
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Profile: demo or global.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars or log lines.")]
LogJsonOpt = Annotated[
    bool,
    typer.Option("--log-json", help="Log lines as JSON (run, backfill: the summary too)."),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    """The one handler of user-facing errors: one line, the error's exit status."""
    try:
        yield
    except Gsm3Error as exc:
        label = "day failed" if isinstance(exc, DayFailedError) else "error"
        typer.echo(f"gsm3-ops: {label}: {redact(str(exc))}", err=True)
        raise typer.Exit(code=exc.exit_code) from None


def _settings(config: Path | None, profile: str | None) -> Settings:
    with _user_errors():
        load_secret_files()  # CDSAPI_KEY_FILE and the like, as container secrets are mounted
        limit_threads()  # no more torch threads than a container's CPU limit
        return load_settings(config, profile)


def _date(text: str | None, flag: str) -> dt.date | None:
    """``text`` as a date, or a usage error naming ``flag``."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date in the form YYYY-MM-DD") from None


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM (a container stopped, a pod evicted) ends ``run``/``backfill`` as
    Ctrl-C does: the day in progress is abandoned (its publication rolls back, or the next
    run finishes it) and ``last_run`` records the run as interrupted."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _bars(quiet: bool, log_json: bool) -> bool:
    """Progress bars only for a person at a terminal: never in JSON logs, pipes or files."""
    return not quiet and not log_json and sys.stderr.isatty()


@app.command()
def run(
    date: Annotated[
        str | None, typer.Option("--date", help="Day to produce, YYYY-MM-DD (default: latest).")
    ] = None,
    provisional: Annotated[
        bool,
        typer.Option(
            "--provisional",
            help="Fill late inputs (flagged) and mark the day provisional instead of failing.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Redo the day even if already published.")
    ] = False,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Produce and publish one day (default: the latest day the profile can serve).

    Exit status: 0 published (or already published), 1 the day failed (inputs missing,
    publication failed; see `gsm3-ops status`), 2 usage or configuration error.
    """
    from gsm3_ops.ops.pipeline import run as run_day

    settings = _settings(config, profile)
    with _user_errors():
        day = _date(date, "--date")
        setup_logging(quiet, log_json)
        with _sigterm_interrupts():
            result = run_day(settings, day, provisional=provisional, force=force,
                             progress=_bars(quiet, log_json))  # fmt: skip
    if log_json:  # one JSON object on stdout, for the machine that reads the logs
        doc = {"command": "run", "day": result.day.isoformat(), "outcome": result.outcome,
               "seconds": round(result.seconds, 1), "cog": str(result.cog),
               "zarr": str(result.product), "manifest": str(result.manifest)}  # fmt: skip
        typer.echo(json.dumps(doc))
        return
    state = " (already published; skipped)" if result.skipped else ""
    state += " (provisional)" if result.provisional else ""
    typer.echo(f"day:      {result.day.isoformat()} ({result.seconds:.1f} s){state}")
    typer.echo(f"cog:      {result.cog}")
    typer.echo(f"zarr:     {result.product}")
    typer.echo(f"manifest: {result.manifest}")


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last day, YYYY-MM-DD.")],
    reprocess_upgraded: Annotated[
        bool,
        typer.Option("--reprocess-upgraded", help="Redo days whose inputs were upgraded since."),
    ] = False,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Produce every day of a range in date order; resumable (finished days are skipped).

    Exit status: 0 every day published, 1 some days failed (listed; see `gsm3-ops status`),
    2 usage or configuration error.
    """
    from gsm3_ops.ops.backfill import run_backfill

    settings = _settings(config, profile)
    with _user_errors():
        first, last = _date(start, "--start"), _date(end, "--end")
        if last < first:
            raise UsageError(f"--end {last} is before --start {first}")
        setup_logging(quiet, log_json)
        with _sigterm_interrupts():
            result = run_backfill(settings, first, last, reprocess_upgraded=reprocess_upgraded,
                                  progress=_bars(quiet, log_json))  # fmt: skip
    if log_json:  # one JSON object on stdout, for the machine that reads the logs
        doc = {"command": "backfill", "start": first.isoformat(), "end": last.isoformat(),
               "produced": [d.isoformat() for d in result.produced],
               "skipped": [d.isoformat() for d in result.skipped],
               "failed": {d.isoformat(): e for d, e in result.failed.items()},
               "seconds": round(result.seconds, 1)}  # fmt: skip
        typer.echo(json.dumps(doc))
    else:
        typer.echo(
            f"backfill {first}..{last}: {len(result.produced)} produced, "
            f"{len(result.skipped)} already done, {len(result.failed)} failed "
            f"({result.seconds:.0f} s)"
        )
        for day, error in result.failed.items():
            typer.echo(f"failed {day}: {error}")
    if result.failed:
        raise typer.Exit(code=1)


@app.command()
def schedule(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    provisional: Annotated[
        bool, typer.Option("--provisional", help="Publish late days provisionally.")
    ] = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Run the daily job on the configured cron line until SIGTERM (see `schedule.cron`)."""
    from gsm3_ops.ops.scheduler import run_schedule

    settings = _settings(config, profile)
    setup_logging(False, log_json)
    with _user_errors():
        run_schedule(settings, provisional)


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the bundle to.")],
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    folds: Annotated[
        int | None,
        typer.Option("--folds", min=2, help="One member per fold of a K-fold split of the cells."),
    ] = None,
    members: Annotated[
        int | None,
        typer.Option("--members", min=1, help="N seeded members (default: training.members)."),
    ] = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Train the model ensemble into one bundle directory; an interrupted run resumes."""
    from gsm3_ops.ops.deployment import Deployment
    from gsm3_ops.ops.models import train as train_bundle

    settings = _settings(config, profile)
    with _user_errors():
        if folds is not None and members is not None:
            raise UsageError("choose --folds or --members, not both")
        setup_logging(quiet, log_json)
        path = train_bundle(Deployment(settings), out.resolve(), members=members, folds=folds,
                            progress=_bars(quiet, log_json))  # fmt: skip
    typer.echo(f"bundle: {path}")


@app.command()
def ingest(
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            help="Source (repeatable): era5, era5_land, imerg, mswep, modis, smap, ismn, "
            "uscrn, static.",
        ),
    ],
    date: Annotated[str, typer.Option("--date", help="First (or only) day, YYYY-MM-DD.")],
    end: Annotated[str | None, typer.Option("--end", help="Last day (default: --date).")] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Take raw files from this folder instead of fetching."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo days already ingested.")] = False,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Fetch (or take from --from), read, grid and write sources' days into the cube.

    Exit status 1 when any source failed on any day (each failure is listed and recorded in
    that day's cube manifest); the other days and sources are ingested regardless.
    """
    from gsm3_ops.ops.deployment import Deployment
    from gsm3_ops.ops.ingest import ingest_sources

    settings = _settings(config, profile)
    with _user_errors():
        first = _date(date, "--date")
        last = _date(end, "--end") or first
        if last < first:
            raise UsageError(f"--end {last} is before --date {first}")
        if from_dir is not None and not from_dir.is_dir():
            raise UsageError(f"--from {from_dir}: no such folder")
        setup_logging(quiet, log_json)
        lines = ingest_sources(Deployment(settings), source, first, last, from_dir=from_dir,
                               force=force)  # fmt: skip
    for line in lines:
        typer.echo(line.text)
    if any(line.status == "failed" for line in lines):
        raise typer.Exit(code=1)


@app.command()
def evaluate(
    out: Annotated[Path, typer.Option("--out", help="Report directory to write.")],
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", help="random-kfold, continental or temporal (trains folds)."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Score this model bundle instead.")
    ] = None,
    against: Annotated[str, typer.Option(help="Observation: insitu, smap or truth.")] = "insitu",
    folds: Annotated[int, typer.Option(help="Folds of random-kfold.")] = 5,
    min_pairs: Annotated[int, typer.Option(help="Fewest paired days to score a site.")] = 30,
    start: Annotated[
        str | None, typer.Option(help="--model: first day scored (default training.test_start).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="--model: last day scored (default training.test_end).")
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(help="NAME=cube:smap | NAME=zarr:PATH#VAR | NAME=cog:DIR (repeatable)."),
    ] = None,
    own_days: Annotated[
        bool, typer.Option(help="Score each model on its own paired days, not common ones.")
    ] = False,
    held_out_only: Annotated[
        bool, typer.Option(help="--model: only sites in cells its training held out.")
    ] = False,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Run one of the paper's experiments or score a bundle; write a report directory."""
    from gsm3_ops.evaluation.experiments import evaluate as run_evaluation
    from gsm3_ops.evaluation.experiments import options_from_cli
    from gsm3_ops.ops.deployment import Deployment

    settings = _settings(config, profile)
    with _user_errors():
        opts = options_from_cli(against, folds, min_pairs, _date(start, "--start"),
                                _date(end, "--end"), reference, own_days,
                                held_out_only)  # fmt: skip
        setup_logging(quiet, log_json)
        report = run_evaluation(Deployment(settings), out.resolve(), opts, experiment, model,
                                _bars(quiet, log_json))  # fmt: skip
    typer.echo(f"report:  {report.path / 'report.md'}")
    typer.echo(f"skipped: {len(report.skipped)} (listed in {report.path / 'skipped.csv'})")


@app.command()
def status(
    start: Annotated[
        str | None, typer.Option("--start", help="First day (default: end - 29).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last day (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_lag: Annotated[
        int | None,
        typer.Option(
            "--max-lag",
            min=0,
            help="Exit 1 when the latest published day is more than N days behind --end.",
        ),
    ] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Each day complete / provisional / failed / missing, input versions, bundle, last run."""
    from gsm3_ops.ops.status import status as status_of

    settings = _settings(config, profile)
    with _user_errors():
        report = status_of(settings, _date(start, "--start"), _date(end, "--end"), max_lag)
    _print_status(report, as_json)
    lag = report["lag_days"]
    if max_lag is not None and (lag is None or lag > max_lag):
        behind = "nothing published" if lag is None else f"the latest published day is {lag} days"
        typer.echo(f"gsm3-ops: {behind} behind {report['end']} (--max-lag {max_lag})", err=True)
        raise typer.Exit(1)


def _print_status(report: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    counts = "  ".join(f"{k} {v}" for k, v in report["counts"].items())
    typer.echo(f"days {report['start']}..{report['end']}: {counts}")
    lag = report["lag_days"]
    typer.echo(f"lag: {'nothing published' if lag is None else f'{lag} days'}")
    if report["timeseries_lag_days"]:
        typer.echo(f"time-series copy: {report['timeseries_lag_days']} days behind the product "
                   "(the next run rebuilds it)")  # fmt: skip
    typer.echo(f"bundle: {report['bundle_id'] or '-'}")
    run = report["last_run"]
    typer.echo(f"last run: {run['command']} {run['outcome']} at {run['finished']}" if run
               else "last run: none recorded")  # fmt: skip
    for d in report["days"]:
        detail = d["error"] or ", ".join(f"{k}:{v}" for k, v in d["inputs"].items())
        if d["ingest_failures"]:
            detail += f" (ingest failed: {', '.join(d['ingest_failures'])})"
        typer.echo(f"{d['date']} {d['status']:<11} {detail}")


@app.command()
def world(
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write the synthetic world's days (the demo's inputs) as a local archive in the
    providers' own formats, under ``world.archive``; resumes an interrupted write."""
    from gsm3_ops.world.archive import write_world

    settings = _settings(config, profile)
    setup_logging(quiet)
    with _user_errors():
        root = write_world(settings)
    typer.echo(f"archive: {root}")


@app.command()
def serve(
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            help="Publish root to serve (folder or s3://bucket/prefix); "
            "default: publish_root of the configuration.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8080,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Origin allowed to call the API (repeatable; * any)."),
    ] = None,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
    log_json: LogJsonOpt = False,
) -> None:
    """Serve a publish root read-only over HTTP: web map, XYZ/WMTS tiles, point values, time
    series, the STAC catalogue and Prometheus metrics (until SIGTERM or Ctrl-C)."""
    import uvicorn

    from gsm3_ops.serve.app import create_app
    from gsm3_ops.serve.root import PublishRoot

    with _user_errors():
        options: dict = {}
        if root is None:  # the deployment's publish root: the bucket when it publishes to one
            settings = load_settings(config, profile)
            root = settings.publish_remote or str(settings.publish_root)
            options = settings.publish_options
        PublishRoot(root, options).check()
        setup_logging(False, log_json)
        service = create_app(root, cors_origins=cors_origin or [], storage_options=options)
    target = root
    typer.echo(f"serving {target} on http://{host}:{port}/")
    uvicorn.run(service, host=host, port=port, loop="uvloop", http="httptools", workers=1,
                access_log=False, log_level="warning")  # fmt: skip


if __name__ == "__main__":
    app()
