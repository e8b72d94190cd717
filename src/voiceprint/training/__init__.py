"""Training: the trainer (one process or DDP under torchrun) and checkpoints."""
