"""County administration: the device CA, credentials, bundles and the broker's config."""
