"""Warnings from threads (thalweg.scale._warnings): one thread's muting never hides another thread's warnings, and
the process-wide filters are not changed (the streamed run lost the scheme's warning that way)."""
from __future__ import annotations

import threading
import warnings

from thalweg.errors import ThalwegWarning
from thalweg.scale._warnings import muted, once


def test_muting_one_thread_leaves_the_others_and_the_filters_alone():
    inside, go = threading.Event(), threading.Event()

    def quiet():
        with muted():
            warnings.warn("from the muted thread", ThalwegWarning, stacklevel=1)
            inside.set()
            go.wait(5)  # the main thread warns while this one is still muted

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        t = threading.Thread(target=quiet)
        t.start()
        assert inside.wait(5)
        warnings.warn("from the main thread", ThalwegWarning, stacklevel=1)
        assert warnings.filters == filters
        go.set()
        t.join(5)
        warnings.warn("after", ThalwegWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["from the main thread", "after"]


def test_once_shows_each_text_once_whichever_thread_raises_it():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with once():
            threads = [threading.Thread(target=lambda: warnings.warn("x lowered", ThalwegWarning, stacklevel=1))
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            warnings.warn("x lowered", ThalwegWarning, stacklevel=1)
            warnings.warn("another", ThalwegWarning, stacklevel=1)
            warnings.warn("not ours", UserWarning, stacklevel=1)
            warnings.warn("not ours", UserWarning, stacklevel=1)
        warnings.warn("x lowered", ThalwegWarning, stacklevel=1)  # a new block (run): said again
    assert [str(w.message) for w in caught] == ["x lowered", "another", "not ours", "not ours", "x lowered"]
