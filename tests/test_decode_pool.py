"""The indexer's decode pool hands files out in chunks, keeps their order and bounds what is in flight."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from indexer.pipeline import bounded_map


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_chunked_map_keeps_order_and_bounds_tasks_in_flight(chunk):
    submitted = []
    with ThreadPoolExecutor(2) as threads:

        class Pool:
            def submit(self, fn, *args):
                submitted.append(len(args[-1]))
                return threads.submit(fn, *args)

        out = []
        for y in bounded_map(Pool(), lambda x: x * x, range(50), window=4, chunk=chunk):
            assert len(submitted) <= len(out) // chunk + 4  # never more than `window` tasks ahead
            out.append(y)
    assert out == [x * x for x in range(50)]
    assert submitted == [chunk] * (50 // chunk) + ([50 % chunk] if 50 % chunk else [])
