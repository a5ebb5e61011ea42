"""`python -m bspk_pipelines.cli`, as `bspk`: how the project's own processes start a command."""

import sys

from bspk_pipelines.cli import main

sys.exit(main())
