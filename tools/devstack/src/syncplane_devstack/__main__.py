"""`python -m syncplane_devstack`: the same as the `syncplane` command."""

import sys

from syncplane_devstack.cli import main

sys.exit(main())
