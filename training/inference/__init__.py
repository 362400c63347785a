"""Generation from base and tuned models: targets (what a model id names), decoding, the engine,
the model cache and batch tests."""
