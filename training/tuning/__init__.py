"""LoRA tuning: the trainer and its session, batching, loss, adapters, checkpoints, hardware
choice, time estimates and torch runtime settings."""
