"""The real sources by name: which module and class serve each, built from config options."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gsm3_ops.errors import SourceError, UsageError
from gsm3_ops.sources.base import GriddedSource

# name -> (module, class); modules are imported only when a source is used.
GRIDDED: dict[str, tuple[str, str]] = {
    "era5": ("gsm3_ops.sources.era5", "Era5Source"),
    "era5_land": ("gsm3_ops.sources.era5", "Era5LandSource"),
    "imerg": ("gsm3_ops.sources.imerg", "ImergSource"),
    "mswep": ("gsm3_ops.sources.mswep", "MswepSource"),
    "modis": ("gsm3_ops.sources.modis", "ModisSource"),
    "smap": ("gsm3_ops.sources.smap", "SmapSource"),
}
INSITU: dict[str, tuple[str, str]] = {
    "ismn": ("gsm3_ops.sources.ismn", "IsmnSource"),
    "uscrn": ("gsm3_ops.sources.uscrn", "UscrnSource"),
}
STATIC = "static"  # default providers' rasters (or the operator's) + long-term means from the cube
ALL = (*GRIDDED, *INSITU, STATIC)


class UnknownSourceError(SourceError, UsageError):
    """A source name that is not in the catalogue."""


def check_names(names: tuple[str, ...]) -> None:
    """Raise :class:`UnknownSourceError` for a name that is not a known source."""
    for name in names:
        if name not in ALL:
            known = ", ".join(sorted(ALL))
            raise UnknownSourceError(f"unknown source {name!r}; sources are: {known}")


def gridded_source(
    name: str, options: Mapping[str, Any] | None = None, client: Any = None, **extra: Any
) -> GriddedSource:
    """Build the gridded source ``name`` from its config ``options`` (validated by the source).

    ``client`` replaces the source's download client (tests, air-gapped mirrors); ``extra``
    goes to the constructor (e.g. MODIS's ``climatology``).
    """
    if name not in GRIDDED:
        check_names((name,))
        raise UnknownSourceError(f"{name!r} is not a gridded source")
    return _build(name, GRIDDED[name], options, client, extra)


def insitu_source(name: str, options: Mapping[str, Any] | None = None, client: Any = None) -> Any:
    """Build the in-situ source ``name`` (``ismn``, ``uscrn``) from its config ``options``."""
    if name not in INSITU:
        check_names((name,))
        raise UnknownSourceError(f"{name!r} is not an in-situ source")
    return _build(name, INSITU[name], options, client, {})


def _build(
    name: str,
    where: tuple[str, str],
    options: Mapping[str, Any] | None,
    client: Any,
    extra: Mapping[str, Any],
) -> Any:
    cls = getattr(importlib.import_module(where[0]), where[1])
    try:
        opts = cls.Options(**dict(options or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where_key = ".".join(str(p) for p in err["loc"])
        raise SourceError(f"sources.options.{name}.{where_key}: {err['msg']}") from None
    return cls(opts, client=client, **extra)
