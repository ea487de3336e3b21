"""The schema of a run configuration: every value's type and range, checked before any work.

``benchmark.config.compose`` calls :func:`check_config` on every merged configuration and
``compose_grid`` calls :func:`check_sweep` on a sweep file's own keys, so a bad value stops
the run with one line (``error: <key>=<value> <what is wrong>; <the fix>``) before any data
loads, any file is written or any model trains. :func:`check_run` validates a whole command
line without running anything.

Keys and did-you-mean of method arguments are ``benchmark.hparams``'s job; here are their
values: the type follows the signature default (an int default needs an integer, a float
default a finite number, a str default one of the choices the base class declares) and the
base-class knobs have their common ranges.
"""

from benchmark.schema.methods import check_method_values, check_value
from benchmark.schema.rules import Invalid, check_dir_writable, fail
from benchmark.schema.run import (
           SCHEMA,
           check_config,
           check_loaded,
           check_run,
           check_sweep,
           executor_name,
           num_classes,
)

__all__ = ["SCHEMA", "Invalid", "check_config", "check_loaded", "check_dir_writable", "check_method_values", "check_run",
           "check_sweep", "check_value", "executor_name", "fail", "num_classes"]
