"""What a sweep writes under ``STORAGE/NAME``, and where each trial's cohort runs.

Next to Tune's own experiment state (one ``train_cohort_<id>_<index>_<values>_<date>/`` directory
per trial): ``sweep.json`` (the settings ``--resume`` rebuilds the sweep from), ``cohorts/<trial>/``
(each trial's run directory, TensorBoard curves included), ``trials.csv`` (one row per trial),
``summary.json``, ``most_trials_at_once.txt`` and ``best.yaml`` (the best trial's curriculum as a
plain config). Pure: no Ray.
"""

from __future__ import annotations

import re
from pathlib import Path

SETTINGS_FILE = "sweep.json"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
SUMMARY_FILE = "summary.json"  # trials, wall time, most trials at once, best trial
PEAK_FILE = "most_trials_at_once.txt"
COHORTS_DIR = "cohorts"


def trial_run_dir(experiment_dir: str | Path, trial_id: str) -> Path:
    """The run directory of trial ``trial_id``'s cohort."""
    return Path(experiment_dir) / COHORTS_DIR / trial_id


def trial_id_of(trial_path: str | Path) -> str:
    """A trial's id from its Tune directory's name (``train_cohort_<id>_<index>_<values>_<date>``);
    its metrics cannot tell, since after a PBT exploit they may be the clone's."""
    match = re.search(r"_([0-9a-f]+_\d{5})_", Path(trial_path).name)
    return match.group(1) if match else Path(trial_path).name
