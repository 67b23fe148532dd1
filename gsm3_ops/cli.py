"""The ``gsm3-ops`` command line: parse, resolve the configuration, call a stage.

Every error a user can fix (configuration, date, input) is one line on stderr and exit
status 2, and nothing is written before the inputs are validated.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer

from gsm3_ops.config import Settings, load_settings
from gsm3_ops.cube import CubeError
from gsm3_ops.errors import ConfigError, SourceError
from gsm3_ops.logs import setup_logging
from gsm3_ops.model.bundle import BundleError
from gsm3_ops.ops.deployment import Deployment, RunError
from gsm3_ops.ops.manifest import LockBusyError, run_lock

app = typer.Typer(
    help="gsm3-ops: daily 9 km surface soil moisture from the GSM3 multitask LSTM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold credentials
)

USER_ERRORS = (ConfigError, RunError, CubeError, BundleError, LockBusyError)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML configuration (default: $GSM3_CONFIG).")
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Profile: demo or global.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars or log lines.")]
LogJsonOpt = Annotated[bool, typer.Option("--log-json", help="Log lines as JSON objects.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"gsm3-ops: error: {message}", err=True)
    return typer.Exit(code=2)


def _settings(config: Path | None, profile: str | None) -> Settings:
    try:
        return load_settings(config, profile)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _fail(f"--date {text!r} is not a date in the form YYYY-MM-DD") from None


def _logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    from gsm3_ops.ops.pipeline import DayFailedError, run_day
    from gsm3_ops.ops.status import record_last_run

    settings = _settings(config, profile)
    day = _parse_date(date) if date else None
    today = dt.date.today()
    try:
        dep = Deployment(settings)
        day = day or dep.latest_day(today, provisional)
        dep.check_day(day, today, provisional)
        setup_logging(quiet, log_json)
        result = run_day(dep, day, progress=not quiet, provisional=provisional, force=force)
    except DayFailedError as exc:
        record_last_run(settings.publish_root, "run", "failed", day=str(day), error=str(exc))
        typer.echo(f"gsm3-ops: day failed: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except USER_ERRORS as exc:
        raise _fail(str(exc)) from None
    outcome = "skipped" if result.skipped else "provisional" if result.provisional else "ok"
    record_last_run(settings.publish_root, "run", outcome, day=str(day))
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
    from gsm3_ops.ops.backfill import backfill as run_backfill
    from gsm3_ops.ops.status import record_last_run

    settings = _settings(config, profile)
    first, last = _parse_date(start), _parse_date(end)
    if last < first:
        raise _fail(f"--end {last} is before --start {first}")
    today = dt.date.today()
    try:
        dep = Deployment(settings)
        dep.check_day(first, today)
        dep.check_day(last, today)
        setup_logging(quiet, log_json)
        result = run_backfill(
            dep, first, last, reprocess_upgraded=reprocess_upgraded, progress=not quiet
        )
    except USER_ERRORS as exc:
        raise _fail(str(exc)) from None
    outcome = "failed" if result.failed else "ok"
    record_last_run(
        settings.publish_root, "backfill", outcome, start=str(first), end=str(last),
        produced=len(result.produced), skipped=len(result.skipped),
        failed={str(d): e for d, e in result.failed.items()},
    )  # fmt: skip
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
    from gsm3_ops.ops.scheduler import serve

    settings = _settings(config, profile)
    setup_logging(False, log_json)
    try:
        Deployment(settings)  # fail now, not at the first fire, on a bad configuration
        serve(settings.schedule, lambda: _daily_job(settings, provisional))
    except (*USER_ERRORS, ValueError) as exc:
        raise _fail(str(exc)) from None


def _daily_job(settings: Settings, provisional: bool) -> str:
    """One scheduled fire: the latest servable day, recorded like `gsm3-ops run`."""
    from gsm3_ops.ops.pipeline import run_day
    from gsm3_ops.ops.status import record_last_run

    dep = Deployment(settings)
    day = dep.latest_day(dt.date.today(), provisional)
    try:
        result = run_day(dep, day, progress=False, provisional=provisional)
    except Exception as exc:
        record_last_run(settings.publish_root, "schedule", "failed", day=str(day), error=str(exc))
        raise
    outcome = "skipped" if result.skipped else "provisional" if result.provisional else "ok"
    record_last_run(settings.publish_root, "schedule", outcome, day=str(day))
    return f"{day} {outcome}"


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
) -> None:
    """Train the model ensemble into one bundle directory; an interrupted run resumes."""
    from gsm3_ops.errors import TrainingError
    from gsm3_ops.ops.ingest import ensure_days
    from gsm3_ops.training.ensemble import train_bundle_from_cube

    if folds is not None and members is not None:
        raise _fail("choose --folds or --members, not both")
    settings = _settings(config, profile)
    t = settings.training
    try:
        dep = Deployment(settings)
        _logging(quiet)
        with run_lock(settings.data_root):
            cube = dep.open_cube()
            ensure_days(dep, cube, t.start, t.end)
            path = train_bundle_from_cube(
                cube, *dep.land_cells, (dep.domain.row0, dep.domain.col0), settings,
                out.resolve(), members=members, folds=folds, progress=not quiet,
            )  # fmt: skip
    except (*USER_ERRORS, TrainingError) as exc:
        raise _fail(str(exc)) from None
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
    from gsm3_ops.ops import ingest_other
    from gsm3_ops.ops.ingest_day import Retry, ingest_range
    from gsm3_ops.sources.catalog import GRIDDED, INSITU, STATIC, check_names

    settings = _settings(config, profile)
    first = _parse_date(date)
    last = _parse_date(end) if end else first
    if last < first:
        raise _fail(f"--end {last} is before --date {first}")
    if from_dir is not None and not from_dir.is_dir():
        raise _fail(f"--from {from_dir}: no such folder")
    setup_logging(quiet, log_json)
    lines: list[tuple[str, str]] = []  # (status, line)
    try:
        check_names(tuple(source))
        dep = Deployment(settings)
        cube = dep.open_cube()
        gridded = tuple(n for n in source if n in GRIDDED)
        if gridded:
            reports = ingest_range(
                cube, dep.gridded_sources(gridded, cube), first, last, dep.grid, dep.domain,
                workdir=dep.raw_dir, from_dir=from_dir, force=force,
                keep_raw=settings.sources.keep_raw,
                retry=Retry(settings.sources.fetch_attempts, settings.sources.fetch_backoff_s),
            )  # fmt: skip
            for o in (o for r in reports for o in r.outcomes):
                detail = o.error if o.status == "failed" else (o.version or "")
                lines.append((o.status, f"{o.day} {o.source:<10} {o.status:<9} {detail}"))
        for src in dep.insitu_sources(tuple(n for n in source if n in INSITU)):
            o = ingest_other.ingest_insitu(
                cube, src, first, last, dep.grid, dep.domain, settings.regions,
                workdir=dep.raw_dir, from_dir=from_dir,
            )  # fmt: skip
            span = f"{first}..{last}"
            detail = o.error if o.status == "failed" else f"{o.n_sites} sites ({o.version})"
            lines.append((o.status, f"{span} {o.source:<10} {o.status:<9} {detail}"))
            lines += [("skipped", f"{span} {o.source:<10} skipped   {p}: {why}")
                      for p, why in o.skipped]  # fmt: skip
        if STATIC in source:
            version = ingest_other.ingest_static(
                cube, settings.sources.options.get(STATIC, {}), dep.grid, dep.domain
            )
            lines.append(("complete", f"{'static':<21} complete  {version}"))
    except (*USER_ERRORS, SourceError) as exc:
        raise _fail(str(exc)) from None
    for _, line in lines:
        typer.echo(line)
    if any(status == "failed" for status, _ in lines):
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
    from gsm3_ops.evaluation.experiments import EVALUATION_ERRORS, options_from_cli
    from gsm3_ops.evaluation.experiments import evaluate as run_evaluation

    settings = _settings(config, profile)
    try:
        opts = options_from_cli(against, folds, min_pairs, start, end, reference, own_days,
                                held_out_only)  # fmt: skip
        dep = Deployment(settings)
        setup_logging(quiet, log_json)
        with run_lock(settings.data_root):
            report = run_evaluation(dep, out.resolve(), opts, experiment, model, not quiet)
    except (*USER_ERRORS, *EVALUATION_ERRORS) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"report:  {report.path / 'report.md'}")
    typer.echo(f"skipped: {len(report.skipped)} (listed in {report.path / 'skipped.csv'})")


@app.command()
def status(
    start: Annotated[
        str | None, typer.Option("--start", help="First day (default: end - 29).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last day (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Each day complete / provisional / failed / missing, input versions, bundle, last run."""
    import json

    from gsm3_ops.ops.status import status_report

    settings = _settings(config, profile)
    try:
        dep = Deployment(settings)
        last = _parse_date(end) if end else dep.latest_day(dt.date.today())
        first = _parse_date(start) if start else last - dt.timedelta(days=29)
        cube = dep.open_cube() if dep.cube_path.exists() else None
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        manifests = {d: cube.manifest(d) for d in days} if cube else {}
        report = status_report(settings.publish_root, manifests, first, last)
    except USER_ERRORS as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    counts = "  ".join(f"{k} {v}" for k, v in report["counts"].items())
    typer.echo(f"days {first}..{last}: {counts}")
    typer.echo(f"bundle: {report['bundle_id'] or '-'}")
    run = report["last_run"]
    typer.echo(f"last run: {run['command']} {run['outcome']} at {run['finished']}" if run
               else "last run: none recorded")  # fmt: skip
    for d in report["days"]:
        detail = d["error"] or ", ".join(f"{k}:{v}" for k, v in d["inputs"].items())
        if d["ingest_failures"]:
            detail += f" (ingest failed: {', '.join(d['ingest_failures'])})"
        typer.echo(f"{d['date']} {d['status']:<11} {detail}")


if __name__ == "__main__":
    app()
