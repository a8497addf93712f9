"""What workers share. Each store has one interface; this issue ships the in-process implementations,
the Redis ones slot in behind the same interface."""
