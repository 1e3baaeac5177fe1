"""The server's text encodings: kept (LRU), and the new texts of concurrent requests encoded in one batch."""

from __future__ import annotations

import threading
import time

import numpy as np

from clipsearch.server.textcache import TextCache


def test_text_encodings_are_kept_and_only_the_new_ones_encoded():
    class Counting:
        dim, calls = 4, []

        def encode_texts(self, texts):
            self.calls.append(list(texts))
            return np.array([[len(t), 1, 0, 0] for t in texts], np.float32)

    inner = Counting()
    cache = TextCache(inner, size=3)
    first = cache.encode_texts(["a", "bb", "a"])
    assert inner.calls == [["a", "bb"]] and first[:, 0].tolist() == [1, 2, 1]
    assert cache.encode_texts(["bb", "ccc"])[:, 0].tolist() == [2, 3] and inner.calls[-1] == ["ccc"]
    cache.encode_texts(["dddd"])  # 4 texts seen, room for 3: "a" (least recently used) goes
    cache.encode_texts(["a", "bb"])
    assert inner.calls[-1] == ["a"] and cache.encode_texts([]).shape == (0, 4)
    assert (cache.hits, cache.misses) == (2, 5)


def test_texts_of_concurrent_requests_are_encoded_in_one_batch():
    release, calls = threading.Event(), []

    class Slow:
        dim = 2

        def encode_texts(self, texts):
            calls.append(list(texts))
            if len(calls) == 1:
                release.wait(60)  # the first encoding runs while the others arrive
            return np.array([[len(t), 0] for t in texts], np.float32)

    cache = TextCache(Slow(), size=100)
    out = {}

    def ask(t):
        out[t] = cache.encode_texts([t, "shared"])[:, 0].tolist()

    first = threading.Thread(target=ask, args=("a",))
    first.start()
    while not calls:
        time.sleep(0.01)
    others = [threading.Thread(target=ask, args=(t,)) for t in ("bb", "ccc", "dddd")]
    for t in others:
        t.start()
    while len(cache._queue) < 3:  # each queued its own text ("shared" is being encoded already)
        time.sleep(0.01)
    release.set()
    for t in [first, *others]:
        t.join(60)
    assert calls[0] == ["a", "shared"] and sorted(calls[1]) == ["bb", "ccc", "dddd"] and len(calls) == 2
    assert out == {t: [len(t), 6] for t in ("a", "bb", "ccc", "dddd")}
