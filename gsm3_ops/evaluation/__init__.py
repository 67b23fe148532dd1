"""Judging the model: metrics on paired valid values, the paper's experiments, reference
products, Table 1, figures and factor analysis (see ``docs/evaluation.md``)."""
