"""What crosses Redis between bot and worker: job requests and ids, events, enqueue helpers, erasing a user."""
