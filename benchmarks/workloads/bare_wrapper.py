"""The least a Python wrapper can do: spawn COMMAND, wait for it, exit with its status.

Usage: bare_wrapper.py [--stdlib] COMMAND [ARG...]

The baseline of the start-up figures: what any entrypoint written in Python
pays before its child runs (the interpreter, one posix_spawn), and no more.
With ``--stdlib`` it first imports the standard modules a supervisor cannot do
without (signals, threads, JSON records, paths, the console script's ``re``):
the floor of a supervisor written in Python, before any code of its own.
"""

import os
import sys

argv = sys.argv[1:]
if argv[0] == "--stdlib":
    argv = argv[1:]
    import fcntl, json, pathlib, queue, re, select, signal, threading, typing  # noqa: E401, F401, I001

pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
