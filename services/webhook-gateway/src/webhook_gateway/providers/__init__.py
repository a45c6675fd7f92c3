"""One module per provider: what the gateway verifies and keeps of what each one sends."""
