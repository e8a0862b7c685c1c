from supervisor.cli import run

run()
