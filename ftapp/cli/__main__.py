"""`python -m ftapp.cli`: the same as the `ftapp` command."""

import sys

from ftapp.cli import main

sys.exit(main())
