"""Media: the files on disk and how to read them.

- `kinds`: what a file holds (photo, raw, video) and the one decode path for indexing and queries;
- `image`, `raw`, `video`: the decoders;
- `files`: scanning folders, stat keys, content hashes, display paths;
- `photometa`, `places`: a photo's date, camera and GPS, and the place name of its position;
- `thumbnail`: cached thumbnails for the UI.
"""
