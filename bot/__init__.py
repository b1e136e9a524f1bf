"""Chat frontends and the platform-free core."""
