"""``python -m voxfield``."""

import sys

from voxfield.cli.main import main

sys.exit(main())
