"""The least a Python wrapper can do: spawn COMMAND, wait for it, exit with its status.

Usage: bare_wrapper.py COMMAND [ARG...]

The baseline of the start-up figures: what any entrypoint written in Python
pays before its child runs (the interpreter, one posix_spawn), and no more.
"""

import os
import sys

pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
