"""A web crawler on the mixed concurrency pattern."""
