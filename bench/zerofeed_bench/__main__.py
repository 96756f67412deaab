"""``python -m zerofeed_bench``: the same as ``zerofeed bench``."""

import sys

from zerofeed_bench.cli import main

sys.exit(main())
