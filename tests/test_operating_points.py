import numpy as np
import pytest

from minicnnrnn.evaluation import operating_points


def test_top_per_image_and_threshold():
    s = np.array([[0.9, 0.2, 0.6, 0.6], [0.1, 0.3, 0.2, 0.4], [0.7, 0.8, 0.9, 0.95]])
    np.testing.assert_array_equal(
        operating_points.top_per_image(s, [2, 0, 4]), [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    )
    np.testing.assert_array_equal(
        operating_points.thresholded(s, 0.5, cap=3), [[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1]]
    )
    assert operating_points.thresholded(s, 0.5).sum(axis=1).tolist() == [3, 0, 4]
    with pytest.raises(ValueError):
        operating_points.top_per_image(s, [5, 0, 0])
