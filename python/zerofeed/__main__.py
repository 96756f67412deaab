"""``python -m zerofeed``: the same command line as the ``zerofeed`` script."""

import sys

from zerofeed.cli import main

sys.exit(main())
