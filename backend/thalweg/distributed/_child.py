"""Entry point of a process started by :func:`thalweg.distributed.launch.launch` (``python -m`` this module)."""
import sys

from .launch import child_main

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
