"""Sandbox PACS: an embedded Query/Retrieve SCP seeded with synthetic patients."""
