"""One async function per command or reaction of the jobs service."""
