"""``python -m supervisor`` and the ``sidecar-supervisor`` console script."""

import gc
from typing import NoReturn


def start() -> NoReturn:
    # No collection while the modules load: they make thousands of objects that
    # all live on, so a collection then finds nothing and only delays COMMAND.
    # ``cli`` freezes them and turns the collector back on before a role runs.
    gc.disable()
    from supervisor.cli import run  # noqa: PLC0415

    run()


if __name__ == "__main__":
    start()
