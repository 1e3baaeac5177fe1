"""clipsearch.server: `clipsearch serve`, a warm HTTP search service over one index.

- `service`: the loaded model and index (reopened live by `live`), through the one query method;
- `app`: the FastAPI app: `routes` (native JSON API), `clipback` (clip-retrieval's endpoints),
  `auth` (loopback or a token), `problems` (every failure as {"error": ...}), `uploads` (query images);
- `textcache`: text encodings kept;
- `runner`: uvicorn on a bound socket;
- `sharded`, `rayserve`: the images in shards behind one ingress, on Ray Serve.

An outer layer, like the CLI and the UI: it imports clipsearch, nothing in clipsearch imports it.
"""
