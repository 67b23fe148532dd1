"""The real sources by name: which module and class serve each, built from config options."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gsm3_ops.sources.base import GriddedSource, SourceError

# name -> (module, class); modules are imported only when a source is used.
GRIDDED: dict[str, tuple[str, str]] = {
    "era5": ("gsm3_ops.sources.era5", "Era5Source"),
    "era5_land": ("gsm3_ops.sources.era5", "Era5LandSource"),
    "imerg": ("gsm3_ops.sources.imerg", "ImergSource"),
    "mswep": ("gsm3_ops.sources.mswep", "MswepSource"),
    "modis": ("gsm3_ops.sources.modis", "ModisSource"),
    "smap": ("gsm3_ops.sources.smap", "SmapSource"),
}


class UnknownSourceError(SourceError):
    """A source name that is not in the catalogue."""


def gridded_source(
    name: str, options: Mapping[str, Any] | None = None, client: Any = None, **extra: Any
) -> GriddedSource:
    """Build the gridded source ``name`` from its config ``options`` (validated by the source).

    ``client`` replaces the source's download client (tests, air-gapped mirrors); ``extra``
    goes to the constructor (e.g. MODIS's ``climatology``).
    """
    if name not in GRIDDED:
        known = ", ".join(sorted(GRIDDED))
        raise UnknownSourceError(f"unknown source {name!r}; gridded sources are: {known}")
    module, cls_name = GRIDDED[name]
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        opts = cls.Options(**dict(options or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SourceError(f"sources.options.{name}.{where}: {err['msg']}") from None
    return cls(opts, client=client, **extra)
