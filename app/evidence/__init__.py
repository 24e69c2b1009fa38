"""Evidence files: received as streams, checked by content, hashed, encrypted at rest, and
every access kept in a chain-of-custody log."""
