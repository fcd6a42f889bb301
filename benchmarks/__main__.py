"""`python -m benchmarks` (also `make bench`): see benchmarks/README.md and `--help`."""

import sys

from benchmarks.harness import main

sys.exit(main())
