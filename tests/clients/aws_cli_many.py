"""Runs many AWS CLI commands in one Python process, each through the CLI's own
driver (`awscli.clidriver`, what the `aws` script calls): the same argument
parsing, parameter validation, request serialisation and error output, without
a Python start per command (about half a second of CPU each).

stdin: a JSON list of argument lists (`[["firehose", "list-delivery-streams"], ...]`);
stdout: a JSON list of `{"rc": int, "stdout": str, "stderr": str}`, one per command.
"""

import contextlib
import io
import json
import sys

import awscli.clidriver

# The first driver's loader of the service models for every command: each
# driver would read and parse the same JSON files again (most of a command's
# time here).
LOADER = None


def run(args):
    global LOADER
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        # A driver per command, as each `aws` process builds its own.
        try:
            driver = awscli.clidriver.create_clidriver()
            if LOADER is None:
                LOADER = driver.session.get_component("data_loader")
            else:
                driver.session.register_component("data_loader", LOADER)
            rc = driver.main(args)
        except SystemExit as exit:  # argparse exits on a usage error
            rc = exit.code if isinstance(exit.code, int) else 2
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
    commands = json.load(sys.stdin)
    if not isinstance(commands, list) or not all(
        isinstance(c, list) and all(isinstance(a, str) for a in c) for c in commands
    ):
        sys.exit("aws_cli_many.py: stdin must be a JSON list of lists of strings (one argument list per command)")
    json.dump([run(args) for args in commands], sys.stdout)


if __name__ == "__main__":
    main()
