"""Taking a tuned model out of the studio: adapter and merged-model folders, model cards and
archives."""
