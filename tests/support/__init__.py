"""Test helpers: corpora, fixtures files, the CLI runner and the UI helpers the tests share."""
