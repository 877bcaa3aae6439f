"""The jobs service: background jobs, workers and scheduled tasks."""
