"""Ray Tune at the edge: sweeps over a cohort's config, population-based curricula, replay.

Ray-free: :mod:`.space` (the search-space file), :mod:`.settings` (a sweep's checked settings,
saved for ``--resume``), :mod:`.layout` (the files of a sweep's directory), :mod:`.monotone`
(mutations that only tighten), :mod:`.replay` (a trial's curriculum as a plain config, the best
one exported), :mod:`.results` (the trial table), :mod:`.curricula` (the sweeps-vs-simple
curricula evidence). Ray Tune: :mod:`.trainable` (one trial = one cohort run),
:mod:`.schedulers`, :mod:`.tuner` (the ``Tuner``) and :mod:`.sweep` (:func:`~.sweep.run_sweep`).
The command line is :mod:`codistill.commands.sweep`.
"""
