"""Train the learned teacher-selection policy; usage: ``python jobs/train_policy.py --help``
(:mod:`policies.train_policy`)."""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)

from policies.train_policy import main

if __name__ == "__main__":
    sys.exit(main())
