"""Model -> replica: choosing a replica, waiting for capacity (hold queue), retry policy."""
