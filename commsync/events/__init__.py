"""Events from the platform: checked against the catalog, their system emails rendered and queued."""
