"""The classifier: ImageNet ResNet50 backbone plus a small head, stored as a versioned artifact.

Keras 3 API only, so KERAS_BACKEND may be tensorflow (default), jax or torch.
"""
