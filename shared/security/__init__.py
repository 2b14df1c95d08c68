"""Rich notifications: validation tokens (tokens.py), certificates (certificates.py), decryption (decryption.py).

Each module imports PyJWT and cryptography inside its functions or on first use,
so importing this package costs nothing on a cold start.
"""
