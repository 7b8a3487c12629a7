"""Configuration: the Hydra schemas, composition from the presets in dse/conf/, and conversion into the
library's typed objects. It sits below every entry point (dse.compile's command line, dse.sweep, dse.explore)
and imports none of them.

Modules: `schemas` (structured configs, Literal-typed fields, `*_from` converters), `compose` (the presets'
package, `compose_config`), `sweeps` (the sweep's ``path=a,b,c`` overrides).
"""

from dse.config.compose import compose_config, conf_dir, is_group, presets
from dse.config.schemas import hardware_from, montecarlo_from, preprocess_from, to_container, tuning_from
from dse.config.sweeps import CommandLine, split_sweeps

__all__ = ["CommandLine", "compose_config", "conf_dir", "hardware_from", "is_group", "montecarlo_from", "presets",
           "preprocess_from", "split_sweeps", "to_container", "tuning_from"]
