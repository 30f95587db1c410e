"""Entry point of a process started by :func:`thalweg.distributed.launch.launch` (``python -m`` this module).

The child leaves by ``os._exit`` once its result or error is on file, as multiprocessing's children do: without
the interpreter's finalization, where threads of Gloo's that outlive the process group can abort the process
("terminate called without an active exception", SIGABRT; pytorch/pytorch#179291 describes the teardown), which
the parent would report as a failure of a run that finished. Output and logs are flushed first."""
import logging
import os
import sys

from .launch import child_main

if __name__ == "__main__":
    code = child_main(sys.argv[1])
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
