"""One file per unlearning method. Importing this package registers them all in
``benchmark.module.METHODS`` under their module names, then the config-only variants:
a ``configs/method/<name>.yaml`` with ``base: <method>`` (e.g. ``ieu_no_noise``) is the
same class with other defaults, registered as ``<name>``. A sub-package is imported too
(``pkgutil`` lists packages as well as modules) and imports its own modules, which register
under explicit names: ``baselines/sanity/`` holds the sanity battery's ``cheat_...`` methods."""

import importlib
import pkgutil

from benchmark.config import register_method_variants

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

register_method_variants()
