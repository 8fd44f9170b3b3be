"""Neural-network building blocks the course builds from scratch (attention, ...)."""
