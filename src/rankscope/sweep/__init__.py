"""Planning, running and storing a sweep."""
