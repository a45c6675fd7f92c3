"""`python -m token_service`: run token-service until SIGTERM;
`python -m token_service rotate-keys`: re-encrypt every stored token under the active key."""

import sys

from syncplane_common.runtime import run

from token_service.app import build
from token_service.cli import main

if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1:]))
    run(build)
