"""The run configuration, at the bottom of the package: :mod:`.schema` (typed, frozen
dataclasses), :mod:`.loading` (YAML and ``--set``) and :mod:`.validation` (each component checks
its own parameters through :mod:`codistill.registry`)."""

from codistill.config.loading import apply_override, changed_fields, load_config, parse_config, read_yaml, set_field
from codistill.config.schema import (AMP_MODES, DEVICES, NONFINITE_ACTIONS, PARTITION_KINDS, PLACEMENTS,
                                     PROBE_SOURCES, RESUME_SAFE_FIELDS, TEACHER_MODES, DataConfig,
                                     DistillationConfig, LRScheduleConfig, MethodConfig, OptimizerConfig,
                                     PartitionConfig, PeerConfig, PolicyConfig, ResourcesConfig, RunConfig,
                                     RuntimeConfig, SparsityConfig, TeacherConfig)
from codistill.config.validation import check_data_settings, check_devices, validate

__all__ = ["AMP_MODES", "DEVICES", "NONFINITE_ACTIONS", "PARTITION_KINDS", "PLACEMENTS", "PROBE_SOURCES",
           "RESUME_SAFE_FIELDS", "TEACHER_MODES", "DataConfig", "DistillationConfig", "LRScheduleConfig",
           "MethodConfig", "OptimizerConfig", "PartitionConfig", "PeerConfig", "PolicyConfig", "ResourcesConfig",
           "RunConfig", "RuntimeConfig", "SparsityConfig", "TeacherConfig", "apply_override", "changed_fields",
           "check_data_settings", "check_devices", "load_config", "parse_config", "read_yaml", "set_field", "validate"]
