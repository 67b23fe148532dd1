"""Writers of the published product: Cloud-Optimized GeoTIFF and the product Zarr."""
