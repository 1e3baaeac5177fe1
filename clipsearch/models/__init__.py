"""Models: what turns pixels and words into vectors.

- `encoder`: an open_clip model loaded for encoding (`load_encoder`, `Encoder`, `ModelIdentity`);
- `weights`: where a model's weights come from (the Hugging Face cache, a local file), never random;
- `bundle`: a model exported to one file and imported on another machine;
- `tokenizer`, `texttower`, `queryencoder`: the torch-free text path of a cold query (ONNX Runtime);
- `imagetower`: the torch-free image path of indexing on a CPU (ONNX Runtime);
- `towerfiles`: where the exported towers live, how they are built, checked and run.
"""
