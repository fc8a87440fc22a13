"""Local stand-ins for services a cluster provides (a Kafka broker for tests and the demo)."""
