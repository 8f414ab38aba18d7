"""mcuformer: search, compile and verify tiny vision transformers for microcontrollers."""

__version__ = "0.1.0"
