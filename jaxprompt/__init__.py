"""jaxprompt: prompt learning on a frozen CLIP in JAX/Flax."""

__version__ = "0.1.0"
