"""Ray Tune at the edge: sweeps over a cohort's config, population-based curricula, replay.

Ray-free: :mod:`.space` (the search-space file), :mod:`.monotone` (mutations that only tighten),
:mod:`.replay` (a trial's curriculum as a plain config), :mod:`.results` (the trial table).
Ray Tune: :mod:`.trainable` (one trial = one cohort run) and :mod:`.schedulers`.
"""
