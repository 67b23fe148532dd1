"""Data sources: each module reads one product onto the EASE-Grid 2.0 grid."""
