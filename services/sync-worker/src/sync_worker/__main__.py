"""`python -m sync_worker`: run sync-worker until SIGTERM."""

from syncplane_common.runtime import run

from sync_worker.app import build

if __name__ == "__main__":
    run(build)
