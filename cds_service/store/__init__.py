"""The decision store: card decisions and clinician feedback (SQLite or PostgreSQL)."""
