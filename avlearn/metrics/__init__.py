"""Evaluation metrics computed the way the field reports them (separation, localization, ...).

Import from the submodule that defines a metric, e.g. ``from avlearn.metrics.separation import si_sdr``.
"""
