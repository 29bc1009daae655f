"""LRA data: readers for the official release files and offline generators (issue 3)."""
