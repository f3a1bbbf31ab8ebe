import pytest

from collectives.algorithms.chunking import chunk_bounds


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 100, 101])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 7])
def test_chunks_cover_buffer_in_order(n, p):
    b = chunk_bounds(n, p)
    sizes = [b[i + 1] - b[i] for i in range(p)]
    assert b[0] == 0 and b[-1] == n and len(b) == p + 1
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # chunk 0 is the largest (scratch sizing relies on it)
