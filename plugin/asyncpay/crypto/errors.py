class CryptoError(ValueError):
    """A key, MAC or ciphertext that does not check out."""
