"""``python -m scratchlm`` runs the command line."""

import sys

from scratchlm.cli.main import main

sys.exit(main())
