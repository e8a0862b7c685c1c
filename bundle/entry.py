"""The bundle's entry point: the CLI, with the environment the container started with.

PyInstaller freezes this script (bundle/build.py). It imports nothing the CLI
does not: every start of the bundle runs it.
"""

import os
import sys
from collections.abc import Iterable, MutableMapping


def restore_environment(environ: MutableMapping[str, str], bundle_dirs: Iterable[str]) -> None:
    """Give COMMAND the environment the container started with.

    The launcher (launcher.c) puts the bundle's library folder first in
    ``LD_LIBRARY_PATH``, and PyInstaller's bootloader adds ``LD_LIBRARY_PATH_ORIG``
    and ``_PYI_*`` variables. A wrapped sidecar must load its own libraries, not
    the bundle's OpenSSL or zlib, so all of that goes. (The dynamic loader read
    ``LD_LIBRARY_PATH`` when this process started: changing it now only affects
    the processes it starts.)
    """
    ours = {os.path.realpath(d) for d in bundle_dirs}
    for key in ("LD_LIBRARY_PATH", "LD_LIBRARY_PATH_ORIG"):
        value = environ.get(key)
        if value is None:
            continue
        kept = [p for p in value.split(":") if p and os.path.realpath(p) not in ours]
        if key == "LD_LIBRARY_PATH" and kept:
            environ[key] = ":".join(kept)
        else:
            del environ[key]
    for key in [k for k in environ if k.startswith("_PYI_")]:
        del environ[key]


if __name__ == "__main__":
    restore_environment(os.environ, [getattr(sys, "_MEIPASS", os.path.dirname(sys.executable))])

    from supervisor.__main__ import start

    start()
