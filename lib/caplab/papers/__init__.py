"""One module per paper: its typed parameters (`Params`), its experiment's glue and its claim metrics, on the
mechanisms of `caplab.science` and the toolkit of `caplab.stats`. Nothing here is cached: a step worth caching
lives in `science` or `substrate`, whose source is part of every cache key, so that editing a paper module (or a
plot) never invalidates a trained model."""
