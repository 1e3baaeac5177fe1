"""Search: from a query to its matches.

- `matcher`: `Matcher.run`, the one query method of the CLI, the UI and the server;
- `algebra`: query terms ("a dog + beach - night", images among them);
- `querydates`, `language`: dates typed into a query, and the query's language;
- `calibration`: calibrated scores of cross-modal matches;
- `collapse`: near duplicates folded into one result;
- `classify`: zero-shot classification of images against a text collection.
"""
