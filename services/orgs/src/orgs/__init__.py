"""The orgs service: organisations (local and remote), logos and merges."""
