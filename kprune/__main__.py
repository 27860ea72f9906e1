"""`python -m kprune` runs the command line."""

import sys

from kprune.cli import main

sys.exit(main())
