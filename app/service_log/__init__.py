"""The service log: contacts and services given to a client, the source of funder counts."""
