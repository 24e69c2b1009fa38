"""Operations on a whole deployment (backup and restore)."""
