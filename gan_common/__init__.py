"""The little that both services and the client share: the store layout, image helpers, config parsing."""
