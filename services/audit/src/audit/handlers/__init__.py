"""One async function per command or reaction of the audit service."""
