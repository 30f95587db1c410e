"""Checks the test suites share: a call that must end, and the CF checker's verdict on a file."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["finishes", "cf_problems"]


def finishes(fn: Callable[[], object], timeout: float = 10.0) -> tuple[bool, BaseException | None]:
    """Run ``fn`` in a thread: (finished within ``timeout`` s, the exception it raised). A reader that blocks (a
    FIFO) or never ends (/dev/zero) fails the test instead of hanging it."""
    box: dict = {}

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("exc")


def cf_problems(path: Path) -> list[str]:
    """Every message of high and medium priority of the IOOS compliance checker's CF-1.8 suite on ``path``."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    report = Path(path).with_suffix(".cf.json")
    ComplianceChecker.run_checker(str(path), ["cf:1.8"], 0, "normal", output_filename=str(report),
                                  output_format="json")
    result = json.loads(report.read_text())["cf:1.8"]
    report.unlink()
    return [f"{item['name']}: {msg}" for prio in ("high_priorities", "medium_priorities")
            for item in result[prio] for msg in item["msgs"]]
