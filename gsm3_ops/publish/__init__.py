"""Publishing: the product Zarr (``product``), a COG per layer (``cog``), the STAC catalogue
(``stac``), derived layers and flag bits (``derived``), the quick-look (``quicklook``), the
time-series copy (``timeseries``); ``day`` publishes a whole day atomically (``atomic``).
See ``docs/products.md``."""
