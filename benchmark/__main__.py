import os
import sys

os.environ.setdefault("WANDB_SILENT", "true")

from benchmark.cli import main  # noqa: E402

sys.exit(main())
