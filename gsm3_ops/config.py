"""Run configuration: named profiles, a YAML file and ``GSM3_*`` environment overrides.

Precedence, lowest first: the profile's defaults (``gsm3_ops/profiles/<name>.yaml``), the YAML
file (``--config`` or ``GSM3_CONFIG``), then environment variables such as
``GSM3_DATA_ROOT`` or ``GSM3_TRAINING__MAX_ITERATIONS`` (nested keys joined by ``__``).
Unknown keys are errors, in the file and in the environment (a ``GSM3_*`` variable that names
no key); relative paths resolve against the working directory.
"""

from __future__ import annotations

import datetime as dt
import os
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gsm3_ops.errors import ConfigError
from gsm3_ops.secrets import masked_config

PROFILES = ("demo", "global")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourcesConfig(_Strict):
    """Which sources fill the inputs.

    ``options`` maps a real source's name (``era5``, ``imerg``, ``smap`` ...) to its settings;
    each source validates its own entry (see ``docs/data-sources.md``).
    """

    gridded: tuple[str, ...] = ("era5", "era5_land", "imerg", "mswep", "modis", "smap")
    insitu: tuple[str, ...] = ("ismn", "uscrn")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    keep_raw: bool = False  # keep fetched raw files under <data_root>/raw after ingestion
    ingest_workers: int = Field(2, ge=1)  # days fetched and ingested at once
    fetch_attempts: int = Field(3, ge=1)  # tries of a fetch that fails for a transient reason
    fetch_backoff_s: float = Field(30.0, ge=0)  # first wait; doubles each retry
    # A fetch's socket read with no data for this long fails the attempt (clients with no
    # timeout of their own: earthaccess downloads, CMR searches; cdsapi: era5*.timeout_s).
    fetch_timeout_s: float = Field(300.0, gt=0)
    # A fetch (every attempt, and a provider's queue: an accepted CDS request waits there) is
    # abandoned after this long; None: no limit. Bounds command-line ingests and runs.
    fetch_deadline_s: float | None = Field(3 * 3600.0, gt=0)
    # A forcing day must have values at this share of the window's land cells (checks.py).
    min_coverage: float = Field(0.9, ge=0, le=1)


class BoxConfig(_Strict):
    """A lon/lat box (degrees); lon_min > lon_max wraps across the antimeridian."""

    lon_min: float = Field(ge=-180, le=180)
    lat_min: float = Field(ge=-90, le=90)
    lon_max: float = Field(ge=-180, le=180)
    lat_max: float = Field(ge=-90, le=90)

    @model_validator(mode="after")
    def _ordered(self) -> BoxConfig:
        if not self.lat_min < self.lat_max:
            raise ValueError("a box needs lat_min < lat_max")
        return self

    def contains(self, lon: Any, lat: Any) -> Any:
        """Boolean (array) of which points lie in the box, edges included."""
        import numpy as np

        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        in_lat = (lat >= self.lat_min) & (lat <= self.lat_max)
        if self.lon_min <= self.lon_max:
            return in_lat & (lon >= self.lon_min) & (lon <= self.lon_max)
        return in_lat & ((lon >= self.lon_min) | (lon <= self.lon_max))


# The GSM3 paper's seven evaluation regions (Liu et al. 2023, Fig. 1; the two African bands
# as stated in the paper, the others as boxes around the station clusters it used).
PAPER_REGIONS: dict[str, dict[str, float]] = {
    "CONUS": {"lon_min": -125.0, "lat_min": 24.0, "lon_max": -66.0, "lat_max": 50.0},
    "Alaska": {"lon_min": -170.0, "lat_min": 51.0, "lon_max": -129.0, "lat_max": 72.0},
    "Europe": {"lon_min": -11.0, "lat_min": 35.0, "lon_max": 40.0, "lat_max": 72.0},
    "Asia": {"lon_min": 60.0, "lat_min": 5.0, "lon_max": 150.0, "lat_max": 60.0},
    "Australia": {"lon_min": 112.0, "lat_min": -44.0, "lon_max": 155.0, "lat_max": -10.0},
    "Africa_North": {"lon_min": -18.0, "lat_min": 1.8, "lon_max": 52.0, "lat_max": 19.3},
    "Africa_South": {"lon_min": 10.0, "lat_min": -38.9, "lon_max": 41.0, "lat_max": -22.0},
}


class CubeConfig(_Strict):
    """The data cube's pre-allocated time axis."""

    start: dt.date = dt.date(2000, 1, 1)
    end: dt.date = dt.date(2035, 12, 31)


class DIConfig(_Strict):
    """Data integration (``gsm3_ops/di.py``, docs/model.md): the model also takes the latest
    SMAP retrieval available at run time. Off by default (the paper's model is open loop)."""

    # Days after which a day's SMAP retrieval is in the cube, and how much later it may come:
    # training draws each window's lag from latency_days..latency_days + late_days, and a
    # run absorbs the retrievals of day - latency_days - late_days .. day - latency_days.
    latency_days: int = Field(2, ge=1)
    late_days: int = Field(2, ge=0)
    # A retrieval older than this counts as none (the model runs open loop there, flagged).
    max_age_days: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _age_covers_latency(self) -> DIConfig:
        if self.max_age_days < self.latency_days + self.late_days:
            raise ValueError("max_age_days must be at least latency_days + late_days")
        return self


class ModelConfig(_Strict):
    """The network; defaults are the GSM3 paper's."""

    # None: the paper's "gsm3" when sources.gridded lists MSWEP (a licensed product), else
    # "gsm3_open" (IMERG and ERA5 precipitation only); see gsm3_ops/variables.py.
    feature_set: str | None = None
    targets: tuple[str, ...] = ("smap", "insitu")
    hidden_size: int = Field(256, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    product_target: str = "insitu"
    # "shared": the paper's Eq. 2, one output compared with every target (its loss is
    # RMSE(y, SMAP) + RMSE(y, in situ)); "separate": one output head per target (the earlier
    # design), the product read from product_target's head. See docs/model.md.
    heads: Literal["shared", "separate"] = "shared"
    # Data integration: None (the paper's open-loop model) or its settings.
    di: DIConfig | None = None
    # A trained bundle to serve (`gsm3-ops train --out DIR`); none: `run` trains one for this
    # configuration on first use and caches it under <data_root>/models.
    bundle: Path | None = None


class TrainingConfig(_Strict):
    """How a model is trained; defaults are the paper's (batch 128, 365-day sequences)."""

    start: dt.date = dt.date(2016, 4, 1)
    end: dt.date = dt.date(2020, 12, 31)
    test_start: dt.date = dt.date(2015, 4, 1)  # the temporal test's period (splits.py)
    test_end: dt.date = dt.date(2016, 3, 31)
    batch_size: int = Field(128, gt=0)
    seq_len: int = Field(365, gt=0)
    members: int = Field(1, gt=0)
    max_iterations: int | None = Field(None, gt=0)
    # hydroDL epochs (sampling.iterations_per_epoch). 100: the paper's "epoch length of 100"
    # read in hydroDL's terms, the length its SMAP runs save as "ep100" (docs/model.md).
    epochs: int = Field(100, gt=0)
    optimizer: Literal["adadelta", "adam"] = "adadelta"
    learning_rate: float = Field(1.0, gt=0)
    # Share of each batch drawn from in-situ sites. Not given by the paper; a fixed share keeps
    # both terms of Eq. 2 in every batch (docs/model.md, "Departures").
    insitu_share: float = Field(0.25, ge=0, le=1)
    holdout_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    threads: int | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16 autocast on CUDA. Off: the paper and hydroDL train in float32, and no measured
    # comparison on a GPU shows bf16 reaching the same skill yet (TF32 matmuls stay allowed).
    # The CPU always trains in float32.
    bf16: bool = False
    checkpoint_every: int = Field(10, ge=0)  # epochs between checkpoints; 0: none


class ClusterConfig(_Strict):
    """Where the inference tile tasks run: in this process (``none``) or on dask.

    ``options`` go to the cluster class (LocalCluster, a dask-jobqueue cluster, KubeCluster,
    LocalCUDACluster); see ``docs/inference.md``.
    """

    kind: Literal["none", "local", "address", "jobqueue", "kubernetes", "dask-cuda"] = "none"
    address: str | None = None  # scheduler address, for kind "address"
    n_workers: int = Field(1, gt=0)
    threads_per_worker: int = Field(1, gt=0)
    processes: bool = True  # LocalCluster: worker processes (False: threads of this process)
    jobqueue_system: Literal["slurm", "pbs", "sge", "lsf", "htcondor", "moab", "oar"] = "slurm"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _address_given(self) -> ClusterConfig:
        if (self.kind == "address") != (self.address is not None):
            raise ValueError("cluster.address is needed for kind 'address', and only for it")
        return self


class InferenceConfig(_Strict):
    """How a day is predicted (see ``docs/inference.md``)."""

    mode: Literal["step", "window"] = "step"
    spinup_days: int = Field(365, gt=0)
    tile_size: int = Field(256, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memory_budget_gb: float = Field(1.0, gt=0)  # per tile task: inputs and LSTM activations
    batch_cells: int | None = Field(None, gt=0)  # fixed cells per batch instead of the budget's
    autocast: Literal["none", "bfloat16"] = "none"  # bf16 autocast (fast on recent GPUs)
    state_dtype: Literal["float32", "bfloat16"] = "float32"
    checkpoint_every: Literal["week", "month", "year"] = "month"
    keep_recent_states: int = Field(3, ge=2)
    keep_checkpoints: int | None = Field(None, gt=0)  # None: keep every checkpoint
    missing_forcing: Literal["fill", "error"] = "fill"  # fill: training mean + quality flag
    cluster: ClusterConfig = ClusterConfig()


class ClimatologyConfig(_Strict):
    """The day-of-year climatology behind the anomaly and percentile layers.

    Without a baseline the product's own earlier years are used; see ``docs/products.md``.
    """

    baseline_start: dt.date | None = None
    baseline_end: dt.date | None = None
    window_days: int = Field(15, ge=0, le=60)
    min_years: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _baseline(self) -> ClimatologyConfig:
        ends = (self.baseline_start, self.baseline_end)
        if (ends[0] is None) != (ends[1] is None):
            raise ValueError("give both baseline_start and baseline_end, or neither")
        if ends[0] is not None and ends[0] > ends[1]:
            raise ValueError("baseline_start is after baseline_end")
        return self


class QualityFlagConfig(_Strict):
    """Thresholds of the quality-flag bits (documented in ``docs/products.md``)."""

    frozen_below_k: float = Field(273.15, gt=0)
    north_aspect_cos_min: float = Field(0.5, ge=-1, le=1)
    north_slope_min_deg: float = Field(1.0, ge=0, le=90)
    dry_smap_mean_max: float = Field(0.15, gt=0, le=1)
    permafrost_lat_min: float = Field(60.0, ge=0, le=90)
    permafrost_lst_mean_max_k: float = Field(273.15, gt=0)
    # Whole tokens of a version naming a provisional stream (IMERG's Early and Late runs
    # are named by their short names, GPM_3IMERGDE / GPM_3IMERGDL and the half-hourly HHE/HHL).
    provisional_versions: tuple[str, ...] = (
        "ERA5T", "early", "late", "NRT", "3IMERGDE", "3IMERGDL", "3IMERGHHE", "3IMERGHHL",
    )  # fmt: skip


class ProductConfig(_Strict):
    """The published product: COGs, Zarr, STAC and the derived layers."""

    start: dt.date = dt.date(2015, 4, 1)
    version: str = "0.1.0"
    collection_id: str = Field("gsm3-ops-soil-moisture", pattern=r"^[A-Za-z0-9._-]+$")
    license: str = "other"
    compression: Literal["deflate", "zstd"] = "deflate"
    web_mercator: bool = False
    quicklook: bool = True
    timeseries_copy: bool = True  # updated with each day (only the new day's time block)
    timeseries_time_chunk: int = Field(64, gt=0)
    timeseries_space_chunk: int = Field(16, gt=0)
    climatology: ClimatologyConfig = ClimatologyConfig()
    flags: QualityFlagConfig = QualityFlagConfig()


class ScheduleConfig(_Strict):
    """When ``gsm3-ops schedule`` runs the daily job (a crontab line, in ``timezone``)."""

    cron: str = "30 7 * * *"
    timezone: str = "UTC"
    misfire_grace_s: int = Field(6 * 3600, gt=0)  # a job late by less than this still runs
    # A day's run stops (recorded as failed) when it holds the run lock longer than this;
    # None: no limit. Applies to run, each day of backfill, and each scheduled fire (run in
    # a child process of its own, with a backstop of this plus a grace: ops/fire.py).
    run_deadline_s: int | None = Field(6 * 3600, gt=0)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("cron needs five fields: minute hour day month day-of-week")
        return value


class WorldConfig(_Strict):
    """The synthetic world's archive (the demo profile): ``gsm3-ops world`` writes its days
    ``start..end`` over the region, in the providers' own formats, under ``archive``; the
    sources read it through their ``archive`` options. Nothing else reads this section."""

    seed: int = 42
    start: dt.date
    end: dt.date
    archive: Path

    @model_validator(mode="after")
    def _ordered(self) -> WorldConfig:
        if self.end < self.start:
            raise ValueError("world.end is before world.start")
        return self


SECRET_WORDS = ("secret", "password", "token", "key")


class Settings(BaseSettings):
    """The whole resolved configuration of a deployment."""

    model_config = SettingsConfigDict(
        env_prefix="GSM3_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    profile: Literal["demo", "global"] = "demo"
    data_root: Path
    # A folder, or an object-storage URL (s3://bucket/prefix): each day is then published
    # atomically into <data_root>/publish (the local mirror) and uploaded in a reader-safe
    # order (publish/remote.py); publish_remote holds the URL.
    publish_root: Path
    publish_remote: str | None = None
    # fsspec storage options of the remote (endpoint_url, region ...); credentials come from
    # the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from this file.
    publish_options: dict[str, Any] = {}
    grid: Literal["M09", "M36"] = "M09"
    region: BoxConfig | None = None  # the domain: the grid cells that overlap this box
    sources: SourcesConfig = SourcesConfig()
    cube: CubeConfig = CubeConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    inference: InferenceConfig = InferenceConfig()
    product: ProductConfig = ProductConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    world: WorldConfig | None = None
    regions: dict[str, BoxConfig] = Field(
        default_factory=lambda: {k: BoxConfig(**v) for k, v in PAPER_REGIONS.items()}
    )

    @model_validator(mode="before")
    @classmethod
    def _remote_publish_root(cls, data: Any) -> Any:
        root = data.get("publish_root") if isinstance(data, dict) else None
        if isinstance(root, str) and "://" in root and not root.startswith("file://"):
            if data.get("data_root") is None:
                raise ValueError("an object-storage publish_root needs data_root (its mirror)")
            data = {**data, "publish_remote": root.rstrip("/"),
                    "publish_root": Path(data["data_root"]) / "publish"}  # fmt: skip
        return data

    @field_validator("data_root", "publish_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        value = value.expanduser().resolve()
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value

    @field_validator("publish_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        secret = [k for k in value if any(w in k.lower() for w in SECRET_WORDS)]
        if secret:
            raise ValueError(
                f"publish_options {secret} look like credentials: set them in the environment "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), not in a configuration file"
            )
        return value

    @model_validator(mode="after")
    def _default_feature_set(self) -> Settings:
        if self.model.feature_set is None:
            licensed = "mswep" in self.sources.gridded
            self.model.feature_set = "gsm3" if licensed else "gsm3_open"
        return self

    @field_validator("region")
    @classmethod
    def _region_in_one_piece(cls, value: BoxConfig | None) -> BoxConfig | None:
        if value is not None and not value.lon_min < value.lon_max:
            raise ValueError("region needs lon_min < lon_max (a domain cannot cross 180 degrees)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which overrides the profile (both come as init).
        return (env_settings, init_settings)

    def to_yaml(self, public: bool = False) -> str:
        """The resolved configuration as YAML (what a run writes beside its outputs), every
        credential masked (``secrets.masked_config``).

        ``public``: for publication, local paths are shown relative to ``${data_root}`` or
        ``${publish_root}``, or as ``${local}/<name>``: nothing published names an internal path.
        """
        doc = masked_config(self.model_dump(mode="json"))  # credentials never leave
        if public:
            roots = {str(self.data_root): "${data_root}", str(self.publish_root): "${publish_root}"}
            doc = _public_paths(doc, roots)
        return yaml.safe_dump(doc, sort_keys=False)

    @property
    def model_dir(self) -> Path:
        """Where trained model bundles are cached."""
        return self.data_root / "models"


def _public_paths(value: Any, roots: dict[str, str]) -> Any:
    """``value`` with every absolute path rewritten against ``roots`` (see ``to_yaml``)."""
    if isinstance(value, dict):
        return {k: _public_paths(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_public_paths(v, roots) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        for root, name in roots.items():
            if value == root or value.startswith(root + "/"):
                return name + value[len(root) :]
        return "${local}/" + Path(value).name
    return value


def _profile_defaults(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    text = resources.files("gsm3_ops.profiles").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data)}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# GSM3_* variables that are not configuration keys (read by the CLI, the tests, fault injection).
NON_SETTING_ENV = frozenset(
    "GSM3_" + name
    for name in ("CONFIG", "PROFILE", "FIXTURES", "MIRROR_KILL_AFTER", "WEBMAP_SCREENSHOT")
)


def _names_a_key(model: type[BaseModel], path: tuple[str, ...]) -> bool:
    """Whether ``path`` (lower-case field names) is a key of ``model`` or lies inside a mapping."""
    info = model.model_fields.get(path[0])
    if info is None:
        return False
    if len(path) == 1:
        return True
    kinds = (info.annotation, *typing.get_args(info.annotation))
    nested = [a for a in kinds if isinstance(a, type) and issubclass(a, BaseModel)]
    return _names_a_key(nested[0], path[1:]) if nested else True


def env_overrides() -> dict[tuple[str, ...], str]:
    """The configuration key each ``GSM3_*`` environment variable sets, by key path.

    A ``GSM3_*`` variable that names no key is an error (a typo would otherwise be ignored).
    """
    out: dict[tuple[str, ...], str] = {}
    for var in sorted(os.environ):
        if not var.upper().startswith("GSM3_") or var.upper() in NON_SETTING_ENV:
            continue
        path = tuple(var[len("GSM3_") :].lower().split("__"))
        if not all(path) or not _names_a_key(Settings, path):
            raise ConfigError(
                f"unknown environment variable {var}: it names no configuration key "
                "(nested keys are joined by '__', e.g. GSM3_TRAINING__EPOCHS)"
            )
        out[path] = var
    return out


def _origin_of(loc: tuple, env: dict[tuple[str, ...], str], fallback: str) -> str:
    """The environment variable that set the key at ``loc`` (or one above it), else ``fallback``."""
    path = tuple(str(p).lower() for p in loc)
    for n in range(len(path), 0, -1):
        if path[:n] in env:
            return f"environment variable {env[path[:n]]}"
    return fallback


def _describe(exc: ValidationError, origin: str, env: dict[tuple[str, ...], str]) -> str:
    err = exc.errors()[0]
    origin = _origin_of(err["loc"], env, origin)
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown config key {where!r} in {origin}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"invalid config key {where!r} in {origin}: {err['msg']}{more}"


def load_settings(path: Path | None = None, profile: str | None = None) -> Settings:
    """Resolve the configuration from a profile, an optional YAML file and the environment.

    Parameters
    ----------
    path
        YAML file; defaults to ``$GSM3_CONFIG`` when set.
    profile
        Profile name; defaults to the file's ``profile`` key, then ``$GSM3_PROFILE``, then demo.
    """
    if path is None and os.environ.get("GSM3_CONFIG"):
        path = Path(os.environ["GSM3_CONFIG"])
    file_data = _read_yaml(Path(path)) if path is not None else {}
    name = profile or file_data.get("profile") or os.environ.get("GSM3_PROFILE") or "demo"
    data = _merge(_profile_defaults(str(name)), file_data)
    data["profile"] = name
    origin = f"config file {path}" if path is not None else f"profile {name!r}"
    env = env_overrides()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, env)) from None
    masked_config(settings.model_dump(mode="json"))  # logs mask its credentials from now on
    return settings
