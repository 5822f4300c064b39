"""Security of the wide-area link: the fleet's certificates and the Zenoh TLS and access-control settings."""
