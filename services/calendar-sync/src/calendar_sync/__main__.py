"""`python -m calendar_sync`: run calendar-sync until SIGTERM."""

from syncplane_common.runtime import run

from calendar_sync.app import build

if __name__ == "__main__":
    run(build)
