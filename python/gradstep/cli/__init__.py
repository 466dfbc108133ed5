"""The `gradstep` command line (also `python -m gradstep`): one module per command.

    gradstep train   [--data digits|FILE.npz|FILE.csv] [--layers 128,64] ...   (cli/train.py)
    gradstep predict --model FILE --data FILE                                  (cli/predict.py)
    gradstep check   ... the babysitting checklist                             (cli/check.py)
    gradstep search  ... random or coarse-to-fine hyperparameter search        (cli/search.py)

Shared flags, flag types and the model builder are in cli/common.py, reading data and deciding the
task in cli/data.py. The commands import those two and never each other; this module imports the
commands. A user's mistake (a missing file, a bad flag value) prints one line and exits with
status 2; Ctrl-C exits with 130.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from . import check, predict, search, train
from .common import Parser, UsageError

COMMANDS = {"train": train, "predict": predict, "check": check, "search": search}

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]


def build_parser() -> Parser:
    parser = Parser(prog="gradstep", description="Train and babysit neural networks with gradstep.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=Parser)
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command].run(args)
    except UsageError as e:
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        # Bad data or hyperparameters surface from the library as ValueError/TypeError with messages
        # that name the argument: show that line, not a traceback.
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngradstep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gradstep predict ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
