"""Data: corpus scanning, the lab protocol, training batches and augmentation."""
