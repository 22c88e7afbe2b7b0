"""`python -m mgrpo` (used by torchrun) runs the CLI."""

import sys

from mgrpo.cli import main

sys.exit(main())
