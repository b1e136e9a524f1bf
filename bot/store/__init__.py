"""The bot's SQLite store: users, sessions, jobs, images and favorites (``database``), and its schema (``schema``)."""
