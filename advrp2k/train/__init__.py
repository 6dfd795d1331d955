"""Training a model under a defense (never imports evaluation)."""
