"""The run configuration, at the bottom of the package: :mod:`.schema` (typed, frozen
dataclasses, each field declared once with its default, range and meaning), :mod:`.fields` (the
reader and range checks derived from the declarations), :mod:`.loading` (YAML and ``--set``) and
:mod:`.rules` (the rules across fields). A config checked against the components it names
(datasets, models, methods, policies) is :func:`codistill.validation.load_config`'s."""

from codistill.config.exchange_names import EXCHANGE_NAMES
from codistill.config.loading import apply_override, build_config, changed_fields, read_mapping, read_yaml, set_field
from codistill.config.rules import check_devices, check_rules
from codistill.config.schema import (
                                     AMP_MODES,
                                     DEVICES,
                                     NONFINITE_ACTIONS,
                                     PARTITION_KINDS,
                                     PLACEMENTS,
                                     PROBE_SOURCES,
                                     RESUME_SAFE_FIELDS,
                                     TEACHER_MODES,
                                     DataConfig,
                                     DistillationConfig,
                                     LRScheduleConfig,
                                     MethodConfig,
                                     OptimizerConfig,
                                     PartitionConfig,
                                     PeerConfig,
                                     PolicyConfig,
                                     ResourcesConfig,
                                     RunConfig,
                                     RuntimeConfig,
                                     SparsityConfig,
                                     TeacherConfig,
)

__all__ = ["AMP_MODES", "DEVICES", "EXCHANGE_NAMES", "NONFINITE_ACTIONS", "PARTITION_KINDS", "PLACEMENTS",
           "PROBE_SOURCES", "RESUME_SAFE_FIELDS", "TEACHER_MODES", "DataConfig", "DistillationConfig",
           "LRScheduleConfig", "MethodConfig", "OptimizerConfig", "PartitionConfig", "PeerConfig", "PolicyConfig",
           "ResourcesConfig", "RunConfig",
           "RuntimeConfig", "SparsityConfig", "TeacherConfig", "apply_override", "build_config", "changed_fields",
           "check_devices", "check_rules", "read_mapping", "read_yaml", "set_field"]
