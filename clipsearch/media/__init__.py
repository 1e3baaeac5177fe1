"""Media: the files on disk and how to read them.

- `kinds`: what a file holds, in the CLI's words: PHOTO, RAW, VIDEO;
- `picture`: the one decode path, the same for indexing, image queries and thumbnails;
- `image`, `raw`, `video`: the decoders it dispatches to;
- `files`: scanning folders, stat keys, content hashes, display paths;
- `photometa`, `places`: a photo's date, camera and GPS, and the place name of its position;
- `thumbnail`: cached thumbnails for the UI.
"""
