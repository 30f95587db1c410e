"""``python -m thalweg.server``: the job service, for launchers that do not go through ``thalweg serve``."""
from __future__ import annotations

import argparse
import sys

from . import add_serve_arguments, serve_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thalweg.server", description="Thalweg's local job service.")
    add_serve_arguments(parser)
    return serve_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
