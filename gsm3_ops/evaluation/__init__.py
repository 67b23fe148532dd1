"""Judging the model: metrics on paired valid values."""
