"""`python -m webhook_gateway`: run webhook-gateway until SIGTERM."""

from syncplane_common.runtime import run

from webhook_gateway.app import build

if __name__ == "__main__":
    run(build)
