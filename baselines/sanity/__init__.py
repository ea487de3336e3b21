"""The sanity battery: cheats an honest benchmark must not reward.

Each cheat registers under an explicit ``cheat_...`` name (the module-name default of
``baselines/`` would give every cheat of a file the same key) and sets ``sanity = True``,
so ``methods=all`` leaves it out; it runs only when listed, e.g.
``methods=[original,cheat_temp_0_5]``. Importing this package registers every cheat.
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
