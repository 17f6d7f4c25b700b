"""Users, organizations, roles, browser sessions and API tokens."""
