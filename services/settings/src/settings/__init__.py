"""The settings service: setting overrides, import blocklists and regexps, diagnostics."""
