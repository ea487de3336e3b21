"""One file per unlearning method. Importing this package registers them all in
``benchmark.module.METHODS`` under their module names."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
