"""A server-rendered admin console for managing users."""
