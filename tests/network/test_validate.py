"""Every validation error names the bad reach ids, the field and says how to fix it."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import CycleError, DuplicateIdError, NetworkError, ThalwegWarning
from thalweg.network import Source, from_arrays
from thalweg.network.validate import resolve_bifurcations

SRC = Source(path="/data/rivers.gpkg", layer="rivers", schema="hydrorivers",
             fields={"id": "HYRIV_ID", "downstream": "NEXT_DOWN", "length": "LENGTH_KM", "area": "UPLAND_SKM"})


def test_cycle_names_its_reaches():
    with pytest.raises(CycleError, match=r"1 -> 2 -> 3 -> 1") as err:
        from_arrays([1, 2, 3, 4], [2, 3, 1, 0], [1.0] * 4, source=SRC)
    assert sorted(err.value.ids) == [1, 2, 3]
    assert err.value.field == "NEXT_DOWN"
    assert "rivers.gpkg, layer 'rivers', field NEXT_DOWN" in str(err.value)
    assert "every reach must drain to an outlet" in str(err.value)


def test_cycle_below_other_reaches_is_found():
    # 10 -> 11 -> 12 -> 11: reach 10 drains into the cycle
    with pytest.raises(CycleError, match=r"11 -> 12 -> 11") as err:
        from_arrays([10, 11, 12], [11, 12, 11], [1.0] * 3, source=SRC)
    assert sorted(err.value.ids) == [11, 12]


def test_self_loop_is_a_cycle():
    with pytest.raises(CycleError, match=r"5 -> 5"):
        from_arrays([5, 6], [5, 0], [1.0, 1.0])


def test_duplicate_ids():
    with pytest.raises(DuplicateIdError, match=r"2 reach ids appear more than once: 7, 9") as err:
        from_arrays([7, 7, 8, 9, 9], [0, 0, 0, 0, 0], [1.0] * 5, source=SRC)
    assert err.value.ids == [7, 9] and err.value.field == "HYRIV_ID"


def test_missing_downstream_ids_become_outlets_with_a_warning():
    with pytest.warns(ThalwegWarning, match=r"2 values in NEXT_DOWN are not reach ids \(5071, 6120\); "
                                            r"treating 3 reaches as outlets"):
        net = from_arrays([1, 2, 3, 4], [5071, 6120, 5071, 1], [1.0] * 4, source=SRC)
    assert (net.downstream == [-1, -1, -1, 0]).all()


def test_outlet_codes_and_empty_downstream():
    net = from_arrays([1, 2, 3], [0, -1, np.nan], [1.0] * 3)
    assert (net.downstream == -1).all()


@pytest.mark.parametrize("bad", [0.0, -3.0, np.nan])
def test_bad_lengths_name_reaches(bad):
    with pytest.raises(NetworkError, match=r"1 reaches have a missing, zero or negative length: 2\.") as err:
        from_arrays([1, 2, 3], [2, 3, 0], [10.0, bad, 5.0], source=SRC)
    assert err.value.ids == [2] and err.value.field == "LENGTH_KM"


def test_unknown_lengths_are_nan_and_catchments_accumulate():
    net = from_arrays([1, 2, 3], [3, 3, 0], None, catchment_area=[1e6, 2e6, 3e6], accumulate_catchments=True,
                      source=SRC)
    assert np.isnan(net.length).all()
    assert net.area.tolist() == [1e6, 2e6, 6e6]
    assert net.source.fields["area"] == "accumulated catchment_area"


def test_empty_network():
    with pytest.raises(NetworkError, match="no reaches") as err:
        from_arrays([], [], [], source=SRC)
    assert err.value.path == "/data/rivers.gpkg"


def test_area_decreasing_downstream():
    ids, ds, length = [1, 2, 3], [2, 3, 0], [1.0] * 3
    area = np.array([50.0, 20.0, 80.0]) * 1e6
    with pytest.raises(NetworkError, match=r"drainage area decreases downstream at 1 links: 1 \(50 km2\) -> 2 "
                                           r"\(20 km2\)") as err:
        from_arrays(ids, ds, length, area, source=SRC)
    assert err.value.ids == [1] and err.value.field == "UPLAND_SKM"
    assert "--check-area warn" in str(err.value)
    with pytest.warns(ThalwegWarning, match="decreases downstream"):
        from_arrays(ids, ds, length, area, source=SRC, check_area="warn")
    net = from_arrays(ids, ds, length, area, source=SRC, check_area="ignore")
    assert net.n_reaches == 3
    # rounding within 0.1 % is not a defect
    from_arrays(ids, ds, length, np.array([50.0, 49.99, 80.0]) * 1e6, source=SRC)


def test_non_integer_ids():
    with pytest.raises(NetworkError, match="whole numbers"):
        from_arrays([1.5, 2.0], [0, 0], [1.0, 1.0])
    with pytest.raises(NetworkError, match="must be integers"):
        from_arrays(["a", "b"], [0, 0], [1.0, 1.0])


def test_resolve_bifurcations_keeps_main_path():
    with pytest.warns(ThalwegWarning, match=r"1 reaches have more than one downstream link; the main path is kept "
                                            r"and the minor paths 2 -> 4 are ignored"):
        f, t = resolve_bifurcations([1, 2, 2, 3, 4], [3, 4, 3, 0, 0], main=[True, False, True, True, True])
    assert f.tolist() == [1, 2, 3, 4] and t.tolist() == [3, 3, 0, 0]


def test_index_of_names_missing_ids():
    net = from_arrays([1, 2, 3], [2, 3, 0], [1.0] * 3, source=SRC)
    assert net.index_of([3, 1]).tolist() == [2, 0]
    with pytest.raises(NetworkError, match=r"2 of the reach ids are not in the network: 9, 11") as err:
        net.index_of([1, 9, 11])
    assert err.value.ids == [9, 11]


def test_network_arrays_are_read_only_and_stay_so():
    """Writing downstream used to leave stale cached levels: every array of a network is read-only, the caller's
    own arrays stay writable, and copies (pickle, deepcopy, take) are read-only too."""
    import copy
    import pickle

    from thalweg.network import from_arrays

    ids = np.array([1, 2, 3, 4])
    down = np.array([2, 3, 4, -1])
    length = np.array([100.0, 200.0, 300.0, 400.0])
    net = from_arrays(ids, down, length, np.array([1.0, 2.0, 3.0, 4.0]) * 1e6, attrs={"order": np.array([1, 1, 2, 2])})
    assert net.levels.tolist() == [0, 1, 2, 3]
    for other in (net, pickle.loads(pickle.dumps(net)), copy.deepcopy(net), net.take(np.array([0, 1]))):
        for name in ("ids", "downstream", "length", "area", "levels"):
            with pytest.raises(ValueError, match="read-only"):
                getattr(other, name)[0] = 0
        with pytest.raises(ValueError, match="read-only"):
            other.attrs["order"][0] = 5
        with pytest.raises(TypeError, match="read-only"):
            other.attrs["new"] = np.zeros(other.n_reaches)
    length[0] = 5.0  # the caller's array is still theirs
    assert net.length[0] == 100.0


def test_a_long_cycle_is_shown_by_its_ends_and_length():
    """Issue 8 finding 12: a 5,000-reach cycle printed a 39,107-character line."""
    n = 5000
    ids = np.arange(1, n + 1) * 7
    down = np.roll(ids, -1)  # 7 -> 14 -> ... -> 35000 -> 7
    with pytest.raises(CycleError) as err:
        from_arrays(ids, down, np.full(n, 10.0), check_area="ignore")
    text = str(err.value)
    assert len(text) < 400, len(text)
    assert "7 -> 14 -> 21 -> 28 -> ... -> 34986 -> 34993 -> 35000 -> 7 (a cycle of 5,000 reaches)" in text
    with pytest.raises(CycleError, match=r"reaches 1 -> 2 -> 3 -> 1 form a cycle"):  # short ones in full
        from_arrays([1, 2, 3], [2, 3, 1], [1.0, 1.0, 1.0])


def test_reach_ids_that_clash_with_outlet_codes():
    """-1 and 0 are outlet codes: a reach -1 is refused (it was reported as the cycle '-1 -> -1'), a reach 0 is a
    reach (links to 0 go to it), and '0 -> 0' says why it is ambiguous."""
    with pytest.raises(NetworkError, match=r"1 reach ids are negative \(-1\); negative downstream ids mark outlets"):
        from_arrays([-1, 5], [-1, -1], [1.0, 1.0])
    net = from_arrays([0, 1, 2], [-1, 0, 0], [1.0, 1.0, 1.0])
    assert net.downstream.tolist() == [-1, 0, 0]
    with pytest.raises(NetworkError, match=r"reach 0 has itself as downstream id, and 0 is also an outlet code") as e:
        from_arrays([0, 1], [0, 0], [1.0, 1.0])
    assert "downstream id -1" in e.value.hint
