"""The command lines that ``jobs/`` runs: ``python jobs/<name>.py`` runs :func:`<name>.main`.

Each ``main(argv)`` parses its arguments, calls the library and prints; it returns the exit
status (2 for a user error, reported as one line naming the field before anything is written or
Ray starts). Tests call them in-process; ``jobs/`` keeps the scripts that ``ray job submit
--working-dir .`` runs from a checkout.
"""
