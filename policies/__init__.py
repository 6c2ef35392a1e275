"""Teacher-selection policies for codistill's teacher-weighting hook.

This package depends on ``codistill``, never the other way round: the engine only knows
:class:`codistill.policy.TeacherWeightingPolicy`. Name a policy in a config as
``distillation.policy.name: policies.<module>:<Class>``.
"""
