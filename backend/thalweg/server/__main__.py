"""``python -m thalweg.server``: the job service, for launchers that do not go through ``thalweg serve``."""
from __future__ import annotations

import argparse
import sys

from . import serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m thalweg.server", description="Thalweg's local job service.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="port (0: a free one, printed on the READY line)")
    p.add_argument("--workspace", help="folder for jobs and the connection file")
    p.add_argument("--connection-file", help="where to write the connection file (url + token, mode 0600)")
    p.add_argument("--allow-remote", action="store_true", help="allow binding to a non-loopback address")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="size limit of request bodies, MB")
    p.add_argument("--shutdown-grace", type=float, default=10.0,
                   help="longest wait, s, for running jobs to stop when the service stops")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    return serve(host=args.host, port=args.port, workspace=args.workspace, allow_remote=args.allow_remote,
                 connection_file=args.connection_file, max_body_mb=args.max_body_mb,
                 shutdown_grace=args.shutdown_grace, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
