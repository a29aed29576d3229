"""Identity: users, password hashes (argon2id), refresh-token families; issues access tokens."""
