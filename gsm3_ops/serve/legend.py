"""``/layers`` and ``/legend/{layer}``: what each layer is and how it is coloured (JSON, or a
small PNG colour bar)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Response
from rio_tiler.utils import render

from gsm3_ops.publish.layers import LAYERS
from gsm3_ops.serve.palettes import PALETTES, Palette
from gsm3_ops.serve.service import LAYER_KEYS, errors, layer_of

router = APIRouter(tags=["layers"])
BAR_WIDTH, BAR_HEIGHT = 256, 16


def colour_bar(palette: Palette) -> bytes:
    """A ``BAR_WIDTH`` x ``BAR_HEIGHT`` PNG: the scale left to right (for the flag, one block
    per class)."""
    if palette.cmap is None:
        classes = [c["value"] for c in palette.legend()["classes"]]
        row = np.repeat(np.array(classes, dtype=np.uint8), -(-BAR_WIDTH // len(classes)))
        row = row[:BAR_WIDTH]
    else:
        row = np.round(np.linspace(0, 255, BAR_WIDTH)).astype(np.uint8)
    data = np.tile(row, (BAR_HEIGHT, 1))[None]
    mask = np.full((BAR_HEIGHT, BAR_WIDTH), 255, dtype=np.uint8)
    return render(data, mask, img_format="PNG", colormap=palette.colormap)


@router.get("/layers")
def layers() -> list[dict[str, Any]]:
    """Every published layer: name, file code, units, long name and legend."""
    return [
        {"name": name, "code": layer.code, "units": layer.units, "long_name": layer.long_name,
         "legend": PALETTES[name].legend()}
        for name, layer in LAYERS.items()
    ]  # fmt: skip


@router.get(
    "/legend/{layer}",
    responses={200: {"content": {"image/png": {}}}, **errors(404)},
)
def legend(
    layer: Annotated[str, Path(description=f"layer name or code: {', '.join(LAYER_KEYS)}")],
    format: Annotated[Literal["json", "png"], Query(description="json or png")] = "json",
) -> Any:
    """The layer's units, range and colour stops; ``format=png`` gives a colour bar."""
    palette = PALETTES[layer_of(layer).name]
    if format == "png":
        return Response(colour_bar(palette), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip
    return palette.legend()
