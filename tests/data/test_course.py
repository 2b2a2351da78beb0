import pickle

import numpy as np
import pytest

from ghostmixnet.data.course import read_course_pickle
from ghostmixnet.errors import DataError


def test_course_pickle(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "t.pkl").write_bytes(pickle.dumps({b"data": images, b"ids": list(range(6))}))
    assert np.array_equal(read_course_pickle(tmp_path / "t.pkl"), images)
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({b"data": images[:, :16]}))
    with pytest.raises(DataError, match=r"shape \(N, 32, 32, 3\)"):
        read_course_pickle(tmp_path / "bad.pkl")
