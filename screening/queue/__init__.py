"""Finding images, recording batches, and handing chunks to workers through Redis."""
