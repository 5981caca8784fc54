"""The one error type of the codec layers (wire, blinded_path, onion_message,
offers, payment): anything that cannot be parsed or would not serialize."""


class WireError(ValueError):
    """Malformed or unacceptable bytes. The message says what and where."""
