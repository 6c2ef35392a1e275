"""Command lines of the jobs that tests run in-process: ``jobs/<name>.py`` runs :func:`<name>.main`
for ``online``, ``offline``, ``sweep`` and ``evidence_methods``.

Each ``main(argv)`` parses its arguments, calls the library and prints; it returns the exit
status (2 for a user error, reported as one line naming the field before anything is written or
Ray starts). ``jobs/`` keeps the scripts that ``ray job submit --working-dir .`` runs from a
checkout; the other jobs parse their own arguments there and call the library directly
(``jobs/train_policy.py`` runs :mod:`policies.train_policy`, since ``codistill`` never imports
``policies``).
"""
