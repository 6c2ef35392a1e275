"""The GPU check's report: ``report.md`` and ``report.json`` in the check's output folder; usage:
``python jobs/gpu_report.py --help`` (:mod:`codistill.commands.gpu_report`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from codistill.commands.gpu_report import main

if __name__ == "__main__":
    sys.exit(main())
