"""Compare: designated units against the others (unit panel, DiD, cohorts, event study,
disparity, spillover).

The statistics (:mod:`~pipeline.compare.panel`, :mod:`~pipeline.compare.did`,
:mod:`~pipeline.compare.cohorts`, :mod:`~pipeline.compare.event`,
:mod:`~pipeline.compare.disparity`) take tables and never import ``read/`` or ``measure/``;
:mod:`~pipeline.compare.county` plans the comparison and wires it to the run's extraction.
"""
