"""``rankscope predict``: a rank interval per training set from cheap signals, before the sweep.

- :mod:`~rankscope.predict.signals` — the rules (energy ranks, the gradient noise edge, the data
  capacity bound), each with its definition and source;
- :mod:`~rankscope.predict.probe` — the cheap measurements they read: the mean gradient at
  initialisation with its noise level, and a short full fine-tuning probe (at most 10 steps);
- :mod:`~rankscope.predict.run` — per training set: measure, apply the rules, time them, and
  write ``prediction.json`` (:mod:`rankscope.runstore.prediction`) for the report.
"""
