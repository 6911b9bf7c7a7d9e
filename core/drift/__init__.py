"""Drift monitoring, pure numpy/scipy: CUSUM, EWMA and BOCPD detectors, ARL0 calibration, streams.

One detector per module (``cusum``, ``ewma``, ``bocpd`` with its conjugate models in
``bocpd_models``), their shared shapes in ``base``, threshold calibration by simulation in
``calibration``, windowed streams in ``streams``, per-study features in ``features``, metadata
novelty in ``novelty``, the per-stream run in ``monitor``, the grouping of a site's related
alarms into incidents in ``incidents`` and seeded test streams in ``synthetic``. Nothing here
imports torch or sqlalchemy; ``core.services.monitoring`` feeds it.
"""
