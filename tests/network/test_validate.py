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
