"""gsm3-ops: daily 9 km surface soil moisture from the GSM3 multitask LSTM."""

# pyproj must load its PROJ library before eccodes (imported by cfgrib, which xarray loads
# as a backend) brings its own copy: the other order breaks pyproj ("no database context")
# and crashes the process at exit.
import pyproj  # noqa: F401

__version__ = "0.1.0"
